//! `resnet models`: the zoo's ten official files — list, pull, path, verify — and the
//! registry flags that every command taking `--model` shares.

use std::path::PathBuf;
use std::process::ExitCode;

use resnet::zoo::registry::{CacheState, Registry, Settings};
use resnet::ResolveOptions;

/// Where zoo models are cached and fetched from; shared by every command that takes `--model`.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Model registry")]
pub struct RegistryArgs {
    /// Cache for downloaded zoo models [env: RESNET_CACHE_DIR; default: $XDG_CACHE_HOME/resnet-rs or ~/.cache/resnet-rs].
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Fetch zoo files as URL/<file name> from a mirror [env: RESNET_MODEL_BASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub base_url: Option<String>,
    /// Never use the network: zoo models must already be in the cache [env: RESNET_OFFLINE=1].
    #[arg(long, global = true)]
    pub offline: bool,
}

impl RegistryArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            cache_dir: self.cache_dir.clone(),
            base_url: self.base_url.clone(),
            offline: self.offline,
            manifest: None,
        }
    }

    /// Options for [`resnet::resolve_model`], with download progress on stderr.
    pub fn resolve_options(&self) -> ResolveOptions {
        ResolveOptions { registry: self.settings(), progress: true }
    }

    fn registry(&self) -> anyhow::Result<Registry> {
        Ok(Registry::from_settings(self.settings())?)
    }
}

/// List, download and check the ONNX model zoo's ten ResNets.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  resnet models list
  resnet models pull resnet50-v2 resnet18-v1
  resnet classify --model \"$(resnet models path resnet50-v2)\" cat.jpg
  resnet models verify ~/Downloads/resnet50-v1-7.onnx
  RESNET_OFFLINE=1 resnet models path resnet50-v2      # never touches the network

Files are fetched from the zoo (or --base-url), resumed if a download was cut off, checked
against their SHA-256 and only then moved into the cache. Any command that takes --model
accepts these names and fetches the model on first use.")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Show each model's name, file, size and whether it is in the cache.
    List {
        /// One JSON object per model per line.
        #[arg(long)]
        json: bool,
    },
    /// Download models into the cache (resuming partial downloads) and verify them.
    Pull {
        /// Model names, e.g. resnet50-v2.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// All ten models (about 1.3 GB).
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
    /// Print the cached file of a model, downloading it first if needed (unless offline).
    Path {
        /// Model name, e.g. resnet50-v2.
        name: String,
    },
    /// Hash a file and say which zoo model it is, if any (exit 1 if none, or not NAME).
    Verify {
        /// The file to check.
        file: PathBuf,
        /// Check that the file is this model.
        #[arg(long)]
        name: Option<String>,
    },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let registry = a.registry.registry()?;
    match a.command {
        Command::List { json } => list(&registry, json),
        Command::Pull { names, all } => {
            let names = if all { registry.models().iter().map(|m| m.name.clone()).collect() } else { names };
            for name in &names {
                registry.model(name)?; // every name checked before the first download
            }
            for name in &names {
                let path = resnet::resolve::fetch(&registry, name, true)?;
                println!("{name}  {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Path { name } => {
            println!("{}", resnet::resolve::fetch(&registry, &name, true)?.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file, name } => verify(&registry, &file, name.as_deref()),
    }
}

fn state_text(state: CacheState) -> String {
    match state {
        CacheState::Verified => "yes".to_string(),
        CacheState::Unchecked => "yes (not yet verified)".to_string(),
        CacheState::Partial(bytes) => format!("partial ({:.1} MB)", bytes as f64 / 1e6),
        CacheState::Missing => "no".to_string(),
    }
}

fn list(registry: &Registry, json: bool) -> anyhow::Result<ExitCode> {
    for m in registry.models() {
        let state = registry.cache_state(m);
        if json {
            let cached = match state {
                CacheState::Verified => "verified",
                CacheState::Unchecked => "unchecked",
                CacheState::Partial(_) => "partial",
                CacheState::Missing => "missing",
            };
            let line = serde_json::json!({
                "name": m.name,
                "file": m.file_name,
                "bytes": m.bytes,
                "sha256": m.sha256,
                "url": registry.url(m),
                "path": registry.cache_path(m),
                "cached": cached,
            });
            println!("{line}");
        } else {
            println!("{:<13} {:<20} {:>9.1} MB  {}", m.name, m.file_name, m.bytes as f64 / 1e6, state_text(state));
        }
    }
    if !json {
        println!("cache {}", registry.cache_dir().display());
        println!("from  {}{}", registry.base_url(), if registry.is_offline() { " (offline)" } else { "" });
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(registry: &Registry, file: &std::path::Path, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let expected = name.map(|n| registry.model(n)).transpose()?;
    let found = registry.identify(file)?;
    let shown = file.display();
    match (expected, found.model) {
        (Some(want), Some(got)) if want.name == got.name => {
            println!("{shown}: ok, {} (sha256 {})", got.name, found.sha256);
            Ok(ExitCode::SUCCESS)
        }
        (Some(want), _) => {
            println!(
                "{shown}: not {}: sha256 {} ({} bytes), expected {} ({} bytes)",
                want.name, found.sha256, found.bytes, want.sha256, want.bytes
            );
            Ok(ExitCode::from(1))
        }
        (None, Some(got)) => {
            println!("{shown}: {} ({}, sha256 {})", got.name, got.file_name, found.sha256);
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => {
            println!("{shown}: matches none of the zoo's models (sha256 {}, {} bytes)", found.sha256, found.bytes);
            Ok(ExitCode::from(1))
        }
    }
}
