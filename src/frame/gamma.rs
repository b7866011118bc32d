//! γ: W exactly as the model holds it, as bf16, in the notebook's file layout (`W.safetensors`, one tensor `W`).
//! Streams W's byte range from the shard that holds it, converting f32/f16 on the way; nothing else is read.

use super::{Context, Frame, Plan, Producer};
use crate::checkpoint::header::Dtype;
use crate::dtype;
use crate::error::{IoContext, Result};
use crate::job::Job;
use crate::manifest::{ByteRange, SourceRecord, fingerprint};
use crate::source::{self, Located};
use crate::store::{BUF_LEN, ByteSink, safetensors_file};
use std::os::unix::fs::FileExt;

pub struct Gamma;

impl Frame for Gamma {
    fn name(&self) -> &'static str {
        "gamma"
    }
    fn version(&self) -> u32 {
        1
    }
    fn inputs(&self) -> &'static [&'static str] {
        &[]
    }
    fn file_name(&self) -> &'static str {
        "W.safetensors"
    }

    fn prepare(&self, cx: &Context, job: &Job, _params: &super::Params) -> Result<Plan> {
        let loc = source::locate(&job.source, job.tensor.as_deref(), &cx.sources)?;
        let mut fp = fingerprint::base(self.name(), self.version(), "BF16");
        fp.insert("rules_version".into(), fingerprint::RULES_VERSION.to_string());
        fp.insert("tensor_override".into(), job.tensor.clone().unwrap_or_else(|| "-".into()));
        fp.extend(loc.identity.clone());
        let source = SourceRecord {
            kind: loc.kind.into(),
            repo: loc.repo.clone(),
            path: loc.repo.is_none().then(|| loc.dir.as_ref().map(|d| d.display().to_string())).flatten(),
            revision: loc.revision.clone(),
            commit: loc.commit.clone(),
            files: loc.files.clone(),
            tensor: loc.w.name.clone(),
            dtype: loc.w.dtype.name().into(),
            shape: loc.w.shape.clone(),
            reason: loc.choice.reason.clone(),
            range: ByteRange { file: loc.shard.clone(), offset: loc.w_offset, length: loc.w.end - loc.w.begin },
        };
        Ok(Plan {
            fingerprint: fp,
            tensor: "W".into(),
            dtype: "BF16".into(),
            shape: loc.w.shape.clone(),
            source: Some(source),
            inputs: Vec::new(),
            params: Default::default(),
            watched: loc.watched.clone(),
            warnings: loc.choice.warning.iter().cloned().collect(),
            producer: Box::new(Extract(loc)),
        })
    }
}

/// Copies (bf16) or converts (f32, f16) W's range into the output, after the notebook's header.
struct Extract(Located);

impl Producer for Extract {
    fn produce(&self, out: &mut dyn ByteSink) -> Result<u64> {
        let loc = &self.0;
        let header =
            safetensors_file::header(&[safetensors_file::Entry { name: "W", dtype: "BF16", shape: &loc.w.shape }]);
        let mut first = out.buffer();
        first.extend_from_slice(&header);
        out.write(first)?;

        let path = &loc.shard_path;
        let file = std::fs::File::open(path).at(path)?;
        let width = dtype::source_width(loc.w.dtype) as u64;
        let elements = (loc.w.end - loc.w.begin) / width;
        let per_chunk = (BUF_LEN / 2) as u64;
        let mut scratch = Vec::new();
        let (mut done, mut nans) = (0u64, 0u64);
        while done < elements {
            let n = per_chunk.min(elements - done);
            let at = loc.w_offset + done * width;
            let mut buf = out.buffer();
            buf.resize((n * 2) as usize, 0);
            if loc.w.dtype == Dtype::Bf16 {
                file.read_exact_at(&mut buf, at).at(path)?;
                nans += dtype::bf16_nans(&buf);
            } else {
                scratch.resize((n * width) as usize, 0);
                file.read_exact_at(&mut scratch, at).at(path)?;
                nans += dtype::to_bf16(loc.w.dtype, &scratch, &mut buf);
            }
            out.write(buf)?;
            done += n;
        }
        Ok(nans)
    }
}
