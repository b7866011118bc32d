//! The derived frames' kit: an input frame's stored matrix (γ's `W`, the embedding's `E`), found through its
//! manifest, checked (path, tensor, dtype, shape), and read in fixed-size blocks of whole rows. A verified pass
//! hashes the whole file on the side and ends in `Error::InputChanged` when it is not the file the manifest
//! records, so nothing computed from other bytes is ever stored; the file's stat is compared before and after.
//! A derived frame gets "my input, verified, in fixed-order row blocks" from here and only computes.

use crate::checkpoint::header::Dtype;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Manifest, check_output_path};
use crate::store::FileStat;
use crate::store::safetensors_file::OutDtype;
use sha2::Digest;
use std::path::{Path, PathBuf};

/// A bf16 matrix `[v, d]` stored by input frame `frame`, whose file must hash to `sha256`.
#[derive(Debug, Clone)]
pub(crate) struct MatrixInput {
    pub(crate) frame: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) sha256: String,
    pub(crate) tensor: String,
    pub(crate) v: usize,
    pub(crate) d: usize,
}

impl MatrixInput {
    /// From the input frame's manifest: its file (inside `root`), tensor, dtype and shape, checked.
    pub(crate) fn of(frame: &'static str, root: &Path, m: &Manifest) -> std::result::Result<MatrixInput, String> {
        check_output_path(&m.output.path)?;
        let &[v, d] = m.output.shape.as_slice() else {
            return Err(format!("{frame}'s shape {:?} is not a matrix", m.output.shape));
        };
        if v == 0 || d == 0 {
            return Err(format!("{frame}'s shape {:?} is empty", m.output.shape));
        }
        if m.output.dtype != OutDtype::Bf16 || m.frame != frame {
            let (tensor, dtype) = (&m.output.tensor, m.output.dtype.name());
            return Err(format!("{frame}'s output is {tensor} {dtype}, expected a BF16 matrix"));
        }
        let (v, d) = (usize::try_from(v).map_err(|e| e.to_string())?, usize::try_from(d).map_err(|e| e.to_string())?);
        let path = root.join(&m.output.path);
        Ok(MatrixInput { frame, path, sha256: m.output.sha256.clone(), tensor: m.output.tensor.clone(), v, d })
    }

    /// Opens the file and checks that its header holds exactly this matrix.
    pub(crate) fn open(&self) -> Result<Opened<'_>> {
        let file = crate::fsread::open_regular(&self.path)?;
        let before = FileStat::of(&self.path)?;
        let (header, _) = crate::source::read_header(&self.path)?;
        let (v, d) = (self.v as u64, self.d as u64);
        let ok = header.get(&self.tensor).is_some_and(|t| t.shape == [v, d] && t.dtype == Dtype::Bf16);
        if !ok || header.tensors.len() != 1 {
            let message = format!("expected a single BF16 tensor {} of shape [{v}, {d}]", self.tensor);
            return Err(Error::Input { input: self.path.display().to_string(), message });
        }
        Ok(Opened { input: self, file, data_start: header.data_start(), header_raw: header.raw, before })
    }
}

/// An input's file, open.
pub(crate) struct Opened<'a> {
    input: &'a MatrixInput,
    file: std::fs::File,
    data_start: u64,
    header_raw: Vec<u8>,
    before: FileStat,
}

impl Opened<'_> {
    /// Rows `[first, first + n)`, read now (not verified on their own: only after a verified pass over them, or
    /// to confirm what a verified pass found).
    pub(crate) fn rows(&self, first: usize, n: usize, buf: &mut Vec<u8>) -> Result<()> {
        let row = self.input.d * 2;
        buf.resize(n * row, 0);
        crate::fsread::read_exact_at(&self.file, buf, self.data_start + (first * row) as u64).at(&self.input.path)
    }

    /// Every row, in blocks of `block_rows` (the last may be shorter), in order: `each(first_row, bytes)`. The
    /// file is hashed beside the work; a digest other than the manifest's is `Error::InputChanged` at the end.
    pub(crate) fn verified_pass(
        &self,
        block_rows: usize,
        each: &mut (dyn FnMut(usize, &[u8]) -> Result<()> + Send),
    ) -> Result<()> {
        self.verified_map(block_rows, each, &mut |()| Ok(()))
    }

    /// As `verified_pass`, for work whose results are written in order (an output file): `compute` runs beside
    /// the hashing while `consume` takes the previous block's result (writing overlaps computing), block by block.
    /// Nothing consumed is trusted until this returns `Ok` (the digest is checked at the end). Everything runs in
    /// rayon's pool (joins, never a blocking wait outside it), so it cannot starve a pool it is called from.
    pub(crate) fn verified_map<T: Send>(
        &self,
        block_rows: usize,
        compute: &mut (dyn FnMut(usize, &[u8]) -> Result<T> + Send),
        consume: &mut (dyn FnMut(T) -> Result<()> + Send),
    ) -> Result<()> {
        let (v, input) = (self.input.v, self.input);
        let mut hasher = sha2::Sha256::new();
        hasher.update(&self.header_raw);
        let mut buf = Vec::new();
        let (mut row, mut pending) = (0, None);
        while row < v {
            let n = block_rows.max(1).min(v - row);
            self.rows(row, n, &mut buf)?;
            let previous = pending.take();
            let (consumed, done) = rayon::join(
                || previous.map_or(Ok(()), &mut *consume),
                || rayon::join(|| hasher.update(&buf), || compute(row, &buf)).1,
            );
            consumed?;
            pending = Some(done?);
            row += n;
        }
        if let Some(last) = pending {
            consume(last)?;
        }
        let got = crate::names::hex(&hasher.finalize());
        if got != input.sha256 {
            return Err(Error::InputChanged {
                frame: input.frame,
                path: input.path.clone(),
                message: format!(
                    "its sha256 {got} differs from {}'s manifest ({}); rebuild {}",
                    input.frame, input.sha256, input.frame
                ),
            });
        }
        Ok(())
    }

    /// `Err` when the file changed (its stat) since it was opened: what was read may mix two versions.
    pub(crate) fn unchanged(&self) -> Result<()> {
        if FileStat::of(&self.input.path)? != self.before {
            return Err(Error::Input {
                input: self.input.path.display().to_string(),
                message: "changed while it was read; run again".into(),
            });
        }
        Ok(())
    }
}
