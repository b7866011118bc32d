//! The causal frames' linear algebra, on faer: products whose every entry is summed in one fixed order whatever
//! the thread count (output column panels, each computed by one sequential faer call, the panels in parallel), the
//! symmetric eigensolver with its parallel split fixed (not the pool size), and the canonical eigenvector sign.
//! What the quantities mean (covariance, metric, whitening) belongs to `causal_metric.rs` and `causal.rs`.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// The linear-algebra crate and version, for manifests (a test checks it against Cargo.lock).
pub(crate) const SOLVER: &str = "faer 0.24.4";
/// Output columns per task in `lower_product`: each entry is computed by exactly one sequential call.
const PANEL: usize = 256;
/// faer's own parallel split for the eigensolver: a fixed number of parts, so the pool size cannot change the
/// order of any sum (checked by the tests with 1, 2 and 5 threads).
const EIGH_PARTS: usize = 4;

/// The lower triangle (diagonal included) of `dst = lhs · rhs` (or `dst += …` with `Accum::Add`); the strict upper
/// triangle is left as it was.
pub(crate) fn lower_product(dst: MatMut<'_, f64>, accum: Accum, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) {
    let d = dst.ncols();
    let mut panels = Vec::new();
    let (mut rest, mut j) = (dst, 0);
    while j < d {
        let w = PANEL.min(d - j);
        let (panel, right) = rest.split_at_col_mut(w);
        panels.push((j, panel));
        rest = right;
        j += w;
    }
    panels.into_par_iter().for_each(|(j0, panel)| {
        let w = panel.ncols();
        let (top, bottom) = panel.split_at_row_mut(j0 + w);
        let top = top.subrows_mut(j0, w);
        let (l_top, r) = (lhs.subrows(j0, w), rhs.subcols(j0, w));
        let (tri, rect) = (BlockStructure::TriangularLower, BlockStructure::Rectangular);
        triangular::matmul(top, tri, accum, l_top, rect, r, rect, 1.0, Par::Seq);
        faer::linalg::matmul::matmul(bottom, accum, lhs.subrows(j0 + w, d - j0 - w), r, 1.0, Par::Seq);
    });
}

/// Copies the lower triangle onto the upper one: the matrix is then exactly symmetric.
pub(crate) fn mirror_lower(m: &mut Mat<f64>) {
    for j in 0..m.ncols() {
        for i in 0..j {
            m[(i, j)] = m[(j, i)];
        }
    }
}

/// `Q diag(f(λ)) Qᵀ`, exactly symmetric.
pub(crate) fn spectral(q: &Mat<f64>, lambda: &[f64], f: impl Fn(f64) -> f64) -> Mat<f64> {
    let d = q.nrows();
    let scaled = Mat::from_fn(d, d, |i, j| q[(i, j)] * f(lambda[j]));
    // Qᵀ stored column-major: the layout faer's kernels read fastest (twice the speed of a transposed view).
    let qt = q.transpose().to_owned();
    let mut out = Mat::<f64>::zeros(d, d);
    lower_product(out.as_mut(), Accum::Replace, scaled.as_ref(), qt.as_ref());
    mirror_lower(&mut out);
    out
}

/// The eigenvalues (ascending) and eigenvectors (columns) of symmetric `c` (its lower triangle is read), each
/// eigenvector's sign fixed: its largest-magnitude component is positive (the first such component on a tie).
pub(crate) fn eigh(c: &Mat<f64>) -> Result<(Vec<f64>, Mat<f64>), String> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::evd;
    let d = c.nrows();
    let par = Par::rayon(EIGH_PARTS);
    let mut s = faer::diag::Diag::<f64>::zeros(d);
    let mut q = Mat::<f64>::zeros(d, d);
    let mut mem =
        MemBuffer::new(evd::self_adjoint_evd_scratch::<f64>(d, evd::ComputeEigenvectors::Yes, par, Default::default()));
    evd::self_adjoint_evd(c.as_ref(), s.as_mut(), Some(q.as_mut()), par, MemStack::new(&mut mem), Default::default())
        .map_err(|e| format!("the eigensolver did not converge ({e:?})"))?;
    let lambda: Vec<f64> = (0..d).map(|i| s[i]).collect();
    for j in 0..d {
        let mut best = 0;
        for i in 1..d {
            if q[(i, j)].abs() > q[(best, j)].abs() {
                best = i;
            }
        }
        if q[(best, j)] < 0.0 {
            for i in 0..d {
                q[(i, j)] = -q[(i, j)];
            }
        }
    }
    Ok((lambda, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_solver_is_the_one_cargo_lock_builds() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        let version = SOLVER.strip_prefix("faer ").unwrap();
        assert!(
            lock.contains(&format!("name = \"faer\"\nversion = \"{version}\"")),
            "Cargo.lock's faer is not {SOLVER}"
        );
    }

    #[test]
    fn products_eigenpairs_and_signs() {
        let d = 300; // more than one panel
        let x = Mat::<f64>::from_fn(500, d, |i, j| ((i * 31 + j * 17) % 23) as f64 - 11.0 + (i == j) as u8 as f64);
        let mut g = Mat::<f64>::zeros(d, d);
        lower_product(g.as_mut(), Accum::Replace, x.transpose(), x.as_ref());
        mirror_lower(&mut g);
        let direct = x.transpose() * &x;
        assert!((&g - &direct).norm_max() <= 1e-9 * direct.norm_max());
        let (lambda, q) = eigh(&g).unwrap();
        assert!(lambda.windows(2).all(|w| w[0] <= w[1]));
        let back = spectral(&q, &lambda, |l| l);
        assert!((&back - &g).norm_max() <= 1e-9 * g.norm_max(), "Q Λ Qᵀ is not C");
        for j in 0..d {
            let col: Vec<f64> = (0..d).map(|i| q[(i, j)]).collect();
            let big = col.iter().cloned().fold(0f64, |m, x| m.max(x.abs()));
            let first = col.iter().position(|x| x.abs() == big).unwrap();
            assert!(col[first] > 0.0, "eigenvector {j}'s largest component is negative");
        }
    }
}
