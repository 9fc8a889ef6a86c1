//! `--model SPEC`: an existing file, or the name of a zoo model fetched (once, verified)
//! through the registry — with a progress bar on a terminal and a plain line otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use resnet_zoo::registry::{DownloadEvent, Registry, Settings};

use crate::error::{Error, Result};

/// How [`resolve_model`] reaches the registry.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Cache directory, mirror, offline mode; unset fields come from the environment.
    pub registry: Settings,
    /// Report downloads on stderr.
    pub progress: bool,
}

/// The file `spec` stands for: `spec` itself if that path exists; else, if it is a zoo model
/// name (`resnet50-v2`), the verified file in the registry's cache, downloaded first if
/// needed (never in offline mode); else an error listing the model names.
///
/// ```no_run
/// let path = resnet::resolve_model("resnet18-v1", &Default::default())?;
/// let model = resnet::Model::load(path)?;
/// # Ok::<(), resnet::Error>(())
/// ```
pub fn resolve_model(spec: &str, options: &ResolveOptions) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let registry = Registry::from_settings(options.registry.clone())?;
    if registry.model(spec).is_err() {
        return Err(Error::NoSuchModel { spec: spec.to_string(), known: registry.names() });
    }
    fetch(&registry, spec, options.progress)
}

/// [`Registry::fetch`] with the download shown on stderr when `progress` is set.
pub fn fetch(registry: &Registry, name: &str, progress: bool) -> Result<PathBuf> {
    if !progress {
        return Ok(registry.fetch(name, &mut |_| {})?);
    }
    let mut report = Reporter::new(name);
    let result = registry.fetch(name, &mut |event| report.on(event));
    report.finish();
    Ok(result?)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A bar when stderr is a terminal; otherwise one line per start or retry, so logs show what
/// a long pause is.
struct Reporter {
    name: String,
    bar: Option<ProgressBar>,
    tty: bool,
}

impl Reporter {
    fn new(name: &str) -> Reporter {
        Reporter { name: name.to_string(), bar: None, tty: std::io::stderr().is_terminal() }
    }

    fn on(&mut self, event: DownloadEvent) {
        match event {
            DownloadEvent::Started { url, total, resume_from } => {
                let resumed =
                    if resume_from > 0 { format!(", resuming at {}", megabytes(resume_from)) } else { String::new() };
                if !self.tty {
                    eprintln!("downloading {} from {url} ({}{resumed})", self.name, megabytes(total));
                    return;
                }
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar
                });
                bar.set_message(format!("{}{resumed}", self.name));
                bar.set_position(resume_from);
            }
            DownloadEvent::Progress { downloaded, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(downloaded);
                }
            }
            DownloadEvent::Retrying { downloaded, error } => {
                let line = format!("connection lost after {} ({error}); resuming", megabytes(downloaded));
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
            }
            DownloadEvent::Verified { path } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                    eprintln!("{}: sha256 verified, saved to {}", self.name, path.display());
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
