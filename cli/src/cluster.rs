//! Reaching the controller: through the API server's service proxy (as kubeseal does) or
//! directly at a URL, and reading the kubeconfig's namespace.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{CliError, CliResult, Context, Hint};

/// Where the controller lives and how to reach the API server.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE", env = "SEALED_SECRETS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Name of the controller's Service.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "SEALED_SECRETS_CONTROLLER_NAME",
        default_value = "sealed-secrets-controller"
    )]
    pub controller_name: String,
    /// Namespace of the controller's Service.
    #[arg(
        long,
        global = true,
        value_name = "NS",
        env = "SEALED_SECRETS_CONTROLLER_NAMESPACE",
        default_value = "kube-system"
    )]
    pub controller_namespace: String,
}

fn read_kubeconfig(args: &ClusterArgs) -> Result<Kubeconfig, kube::config::KubeconfigError> {
    match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
}

/// The namespace the kubeconfig's (current or chosen) context names, if it names one.
pub fn kubeconfig_namespace(args: &ClusterArgs) -> Option<String> {
    let config = read_kubeconfig(args).ok()?;
    let context_name = args.context.clone().or(config.current_context.clone())?;
    config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone())
        .filter(|ns| !ns.is_empty())
}

pub async fn cluster_client(args: &ClusterArgs) -> CliResult<Client> {
    let hint =
        "point --kubeconfig (or KUBECONFIG) at your cluster, or give the certificate with --cert or --controller-url";
    let kubeconfig = read_kubeconfig(args).context("cannot read the kubeconfig").hint(hint)?;
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &options).await.context("cannot use the kubeconfig").hint(hint)?;
    Client::try_from(config).context("cannot create a Kubernetes client").hint(hint)
}

fn get(path: &str) -> CliResult<http::Request<Vec<u8>>> {
    http::Request::get(path)
        .header(http::header::ACCEPT, "application/x-pem-file, */*")
        .body(Vec::new())
        .map_err(|e| CliError::new("cannot build the request").source(e))
}

/// The PEM the controller serves at `/v1/cert.pem`, through the API server's service proxy.
pub async fn fetch_cert_from_cluster(args: &ClusterArgs) -> CliResult<String> {
    let client = cluster_client(args).await?;
    let (ns, name) = (&args.controller_namespace, &args.controller_name);
    let not_found_hint = format!(
        "check that the controller runs as Service {ns}/{name}; set --controller-name and --controller-namespace \
         (a Helm install is usually named sealed-secrets), or seal offline with --cert"
    );
    let service: serde_json::Value = client
        .request(get(&format!("/api/v1/namespaces/{ns}/services/{name}"))?)
        .await
        .context(format!("cannot find the controller Service {ns}/{name}"))
        .hint(not_found_hint.clone())?;
    let port = service.pointer("/spec/ports/0/name").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    client
        .request_text(get(&format!("/api/v1/namespaces/{ns}/services/http:{name}:{port}/proxy/v1/cert.pem"))?)
        .await
        .context(format!("cannot fetch the certificate from {ns}/{name}"))
        .hint(not_found_hint)
}

/// GET an `http(s)://` URL.
pub async fn fetch_url(url: &str) -> CliResult<String> {
    let uri: http::Uri = url.parse().map_err(|e| CliError::usage(format!("{url:?} is not a valid URL")).source(e))?;
    let base =
        format!("{}://{}", uri.scheme_str().unwrap_or("http"), uri.authority().map(|a| a.as_str()).unwrap_or_default());
    let base: http::Uri = base.parse().map_err(|e| CliError::usage(format!("{url:?} is not a valid URL")).source(e))?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let mut config = Config::new(base);
    config.default_namespace = String::new();
    let client = Client::try_from(config).context("cannot create an HTTP client")?;
    client
        .request_text(get(&path)?)
        .await
        .context(format!("cannot fetch {url}"))
        .hint("check the URL and that the controller is reachable from here")
}

/// The controller's certificate from its base URL (`--controller-url`).
pub async fn fetch_cert_from_controller(base: &str) -> CliResult<String> {
    fetch_url(&format!("{}/v1/cert.pem", base.trim_end_matches('/'))).await
}

/// The controller's HTTP API, through the service proxy or at its own URL.
pub struct ControllerApi {
    client: Client,
    base: String,
}

impl std::fmt::Debug for ControllerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerApi").field("base", &self.base).finish_non_exhaustive()
    }
}

impl ControllerApi {
    /// `controller_url` when given, else the cluster's service proxy.
    pub async fn connect(controller_url: Option<&str>, args: &ClusterArgs) -> CliResult<ControllerApi> {
        if let Some(url) = controller_url {
            let uri: http::Uri =
                url.parse().map_err(|e| CliError::usage(format!("{url:?} is not a valid URL")).source(e))?;
            let client = Client::try_from(Config::new(uri)).context("cannot create an HTTP client")?;
            return Ok(ControllerApi { client, base: String::new() });
        }
        let client = cluster_client(args).await?;
        let (ns, name) = (&args.controller_namespace, &args.controller_name);
        let service: serde_json::Value = client
            .request(get(&format!("/api/v1/namespaces/{ns}/services/{name}"))?)
            .await
            .context(format!("cannot find the controller Service {ns}/{name}"))
            .hint(
                "check --controller-name and --controller-namespace (a Helm install is usually named sealed-secrets)",
            )?;
        let port = service.pointer("/spec/ports/0/name").and_then(serde_json::Value::as_str).unwrap_or_default();
        Ok(ControllerApi { client, base: format!("/api/v1/namespaces/{ns}/services/http:{name}:{port}/proxy") })
    }

    /// POST `body` to `path` (e.g. `/v1/verify`): the status code and the body.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> CliResult<(u16, String)> {
        let request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| CliError::new("cannot build the request").source(e))?;
        match self.client.request_text(request).await {
            Ok(text) => Ok((200, text)),
            Err(kube::Error::Api(status)) => Ok((status.code, status.message)),
            Err(e) => Err(CliError::new(format!("cannot reach the controller at {path}"))
                .source(e)
                .hint("check that the controller runs and that you may use its service proxy")),
        }
    }

    /// POST, waiting and retrying while the controller's rate limit answers 429.
    pub async fn post_patiently(&self, path: &str, body: Vec<u8>) -> CliResult<(u16, String)> {
        let mut delay = std::time::Duration::from_millis(300);
        for _ in 0..8 {
            let answer = self.post(path, body.clone()).await?;
            if answer.0 != 429 {
                return Ok(answer);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
        self.post(path, body).await
    }
}
