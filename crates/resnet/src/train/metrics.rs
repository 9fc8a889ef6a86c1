//! The training metrics log: one JSON object per line, one line per epoch, flushed and
//! fsynced as it is written so a crash loses at most the line being written.
//!
//! ```text
//! {"epoch":1,"train_loss":2.31,"train_top1":0.12,"val_top1":0.18,"val_top5":0.52,"val_loss":2.05,"lr":0.01,"seconds":61.2,"images_per_sec":520.3}
//! ```
//!
//! [`read_log`] tolerates a cut-off last line (the crash case) and rejects anything else that
//! is not a record; [`truncate_after`] drops the records of epochs a resumed run will redo.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One epoch's numbers. Accuracies are fractions in [0, 1]; validation fields are `None` for
/// an epoch without validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch's number counted from 1 (= epochs completed once it ends, like
    /// [`super::checkpoint::CheckpointMeta::epoch`]).
    pub epoch: usize,
    /// Mean training cross-entropy over the epoch's batches.
    pub train_loss: f64,
    /// Training top-1 accuracy (on the augmented batches).
    pub train_top1: f64,
    pub val_top1: Option<f64>,
    pub val_top5: Option<f64>,
    pub val_loss: Option<f64>,
    /// Learning rate at the epoch's last iteration.
    pub lr: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
}

/// Why the log could not be read or written; one line naming the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{}: no such metrics log", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:{line}: not a metrics record: {detail}", path.display())]
    BadLine { path: PathBuf, line: usize, detail: String },
    #[error("{}: a record could not be encoded: {detail}", path.display())]
    Encode { path: PathBuf, detail: String },
}

/// An open metrics log that [`MetricsLog::append`]s records.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for writing: `append == false` starts a new, empty log (replacing any);
    /// `append == true` keeps the existing records (creating the file if needed) and removes
    /// a cut-off last line left by a crash, so the next record starts on a line of its own.
    pub fn open(path: &Path, append: bool) -> Result<MetricsLog, MetricsError> {
        let io_err = |source| MetricsError::Io { path: path.to_path_buf(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(!append).open(path).map_err(io_err)?;
        if append {
            let mut text = Vec::new();
            file.read_to_end(&mut text).map_err(io_err)?;
            let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if complete < text.len() {
                file.set_len(complete as u64).map_err(io_err)?;
            }
            file.seek(SeekFrom::Start(complete as u64)).map_err(io_err)?;
        }
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `record` as one line, then flushes and fsyncs it.
    pub fn append(&mut self, record: &EpochRecord) -> Result<(), MetricsError> {
        let mut line = serde_json::to_vec(record)
            .map_err(|e| MetricsError::Encode { path: self.path.clone(), detail: e.to_string() })?;
        line.push(b'\n');
        let io_err = |source| MetricsError::Io { path: self.path.clone(), source };
        self.file.write_all(&line).map_err(io_err)?;
        self.file.flush().map_err(io_err)?;
        self.file.sync_data().map_err(io_err)
    }
}

/// The records of the log at `path`, in file order. Blank lines are skipped; a last line
/// without its newline that does not parse (a write cut off by a crash) is ignored; any other
/// line that is not a record is a [`MetricsError::BadLine`].
pub fn read_log(path: &Path) -> Result<Vec<EpochRecord>, MetricsError> {
    Ok(parse_log(path)?.into_iter().map(|(record, _)| record).collect())
}

/// Drops every record from the first one whose epoch is greater than `epoch` on (and a cut-off
/// last line), for a run resumed after `epoch` completed epochs. Returns how many records
/// remain.
pub fn truncate_after(path: &Path, epoch: usize) -> Result<usize, MetricsError> {
    let records = parse_log(path)?;
    let kept = records.iter().take_while(|(record, _)| record.epoch <= epoch).count();
    let keep_bytes = if kept == 0 { 0 } else { records[kept - 1].1 };
    let io_err = |source| MetricsError::Io { path: path.to_path_buf(), source };
    let file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
    file.set_len(keep_bytes).map_err(io_err)?;
    file.sync_data().map_err(io_err)?;
    Ok(kept)
}

/// Every record with the byte offset just past its line (its newline included, if any).
fn parse_log(path: &Path) -> Result<Vec<(EpochRecord, u64)>, MetricsError> {
    let text = std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => MetricsError::Missing { path: path.to_path_buf() },
        _ => MetricsError::Io { path: path.to_path_buf(), source },
    })?;
    let mut records = Vec::new();
    let mut start = 0usize;
    let mut line_number = 0usize;
    while start < text.len() {
        line_number += 1;
        let (line, end, has_newline) = match text[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (&text[start..start + i], start + i + 1, true),
            None => (&text[start..], text.len(), false),
        };
        start = end;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<EpochRecord>(line) {
            Ok(record) => records.push((record, end as u64)),
            Err(_) if !has_newline => break,
            Err(e) => {
                return Err(MetricsError::BadLine {
                    path: path.to_path_buf(),
                    line: line_number,
                    detail: e.to_string(),
                })
            }
        }
    }
    Ok(records)
}
