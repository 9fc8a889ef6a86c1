//! `resnet serve`: an HTTP model server for image classifiers, compatible with the zoo's Model
//! Server (MMS, SPEC §8) and with the KServe v2 REST protocol.
//!
//! * [`config`]: addresses, limits, batching defaults.
//! * [`store`] + [`queue`] + [`batcher`]: the served models; per model a bounded queue and
//!   worker threads that run dynamic batches on the engine's own pool.
//! * [`inference`], [`kserve`], [`management`]: the HTTP routes; [`metrics`]: `/metrics`;
//!   [`error`]: the JSON error answers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), resnet::serve::ServeError> {
//! use resnet::serve::{ModelSpec, ServeConfig, Server};
//! let config = ServeConfig {
//!     port: 0,
//!     management_port: 0,
//!     models: vec![ModelSpec::parse("resnet50=resnet50-v2").unwrap()],
//!     ..Default::default()
//! };
//! let server = Server::start(config).await?;
//! println!("inference http://{}", server.inference_addr());
//! server.run(resnet::serve::shutdown_signal()).await
//! # }
//! ```

pub mod batcher;
pub mod body;
pub mod config;
pub mod error;
pub mod inference;
pub mod kserve;
pub mod management;
pub mod metrics;
pub mod openapi;
pub mod queue;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use config::{BatchSettings, Limits, ModelSpec, ServeConfig};
pub use error::{ApiError, ServeError};
use inference::AppState;
use metrics::Metrics;
use store::ModelStore;

/// A started server: models loaded, both ports bound, not yet answering.
pub struct Server {
    app: AppState,
    inference: TcpListener,
    management: TcpListener,
}

impl Server {
    /// Loads the startup models (compiling their plans) and binds both ports.
    pub async fn start(config: ServeConfig) -> Result<Server, ServeError> {
        let metrics = Arc::new(Metrics::default());
        let store = Arc::new(
            ModelStore::new(metrics.clone(), config.limits, config.threads, config.engine, config.mode)
                .map_err(ServeError::Start)?,
        );
        for spec in &config.models {
            let (store, spec2, batch) = (store.clone(), spec.clone(), config.batch);
            tokio::task::spawn_blocking(move || store.register(&spec2.name, &spec2.url, batch, true))
                .await
                .map_err(|e| ServeError::Model { name: spec.name.clone(), message: e.to_string() })?
                .map_err(|e| ServeError::Model { name: spec.name.clone(), message: e.message })?;
        }
        let bind = |port| async move {
            let addr = SocketAddr::new(config.bind, port);
            TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })
        };
        let inference = bind(config.port).await?;
        let management = bind(config.management_port).await?;
        let app = AppState {
            store,
            metrics,
            limits: config.limits,
            defaults: config.batch,
            shutting_down: Arc::new(AtomicBool::new(false)),
        };
        Ok(Server { app, inference, management })
    }

    pub fn inference_addr(&self) -> SocketAddr {
        self.inference.local_addr().expect("a bound listener has an address")
    }

    pub fn management_addr(&self) -> SocketAddr {
        self.management.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets every
    /// in-flight request finish (the workers keep running until their queues are drained),
    /// and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let Server { app, inference, management } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let flag = app.shutting_down.clone();
        tokio::spawn(async move {
            shutdown.await;
            flag.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|&stop| stop).await;
        };
        let inference_server =
            axum::serve(inference, inference_router(app.clone())).with_graceful_shutdown(stopped(stop_rx.clone()));
        let management_server =
            axum::serve(management, management_router(app.clone())).with_graceful_shutdown(stopped(stop_rx));
        let (a, b) = tokio::join!(async { inference_server.await }, async { management_server.await });
        a.map_err(|source| ServeError::Io { context: "inference API", source })?;
        b.map_err(|source| ServeError::Io { context: "management API", source })?;
        let store = app.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.shut_down()).await;
        Ok(())
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn inference_router(app: AppState) -> Router {
    use inference::*;
    Router::new()
        .route("/", get(index).options(describe_api))
        .route("/api-description", get(describe_api))
        .route("/ping", get(ping))
        .route("/predictions/{model}", post(predictions).put(predictions).options(describe_model_api))
        .route("/models", get(list_models))
        .route("/metrics", get(metrics))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/{model}", get(kserve::model_metadata))
        .route("/v2/models/{model}/ready", get(kserve::model_ready))
        .route("/v2/models/{model}/infer", post(kserve::infer))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

fn management_router(app: AppState) -> Router {
    Router::new()
        .route("/", axum::routing::options(management::describe_api))
        .route("/models", get(management::list_models).post(management::register))
        .route("/models/{model}", get(management::describe_model).put(management::scale).delete(management::unregister))
        .route("/metrics", get(inference::metrics))
        .fallback(inference::not_found)
        .method_not_allowed_fallback(inference::method_not_allowed)
        .with_state(app)
}
