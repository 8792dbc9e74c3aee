//! Reaching the controller: through the API server's service proxy (as kubeseal does) or
//! directly at a URL, and reading the kubeconfig's namespace.

use sealant_core::error::quoted;
use std::path::PathBuf;
use std::time::Duration;

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
    /// client-go's connection flags (the kubeseal name takes them, as kubectl does).
    #[arg(skip)]
    pub client: ClientFlags,
}

/// client-go's (kubectl's) connection flags, overriding the kubeconfig as they do in kubeseal.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientFlags {
    /// Username to impersonate for the operation.
    #[arg(long = "as", value_name = "USER")]
    pub impersonate: Option<String>,
    /// Group to impersonate (repeatable).
    #[arg(long = "as-group", value_name = "GROUP")]
    pub impersonate_groups: Vec<String>,
    /// UID to impersonate.
    #[arg(long = "as-uid", value_name = "UID")]
    pub impersonate_uid: Option<String>,
    /// Bearer token for authentication to the API server.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Username for basic authentication to the API server.
    #[arg(long)]
    pub username: Option<String>,
    /// Password for basic authentication to the API server.
    #[arg(long)]
    pub password: Option<String>,
    /// Path to a client certificate file for TLS.
    #[arg(long, value_name = "FILE")]
    pub client_certificate: Option<String>,
    /// Path to a client key file for TLS.
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<String>,
    /// The address and port of the Kubernetes API server.
    #[arg(short = 's', long, value_name = "URL")]
    pub server: Option<String>,
    /// Path to a cert file for the certificate authority.
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<String>,
    /// Do not check the server's certificate (insecure).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value_t = false)]
    pub insecure_skip_tls_verify: bool,
    /// Server name to check the server's certificate against.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Proxy URL for requests to the API server.
    #[arg(long, value_name = "URL")]
    pub proxy_url: Option<String>,
    /// The kubeconfig cluster to use.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// How long to wait for one request (Go duration such as 30s or 1m, or seconds; 0: no limit).
    #[arg(long, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<std::time::Duration>,
    /// Accepted for compatibility; responses are small.
    #[arg(long, hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value_t = false)]
    pub disable_compression: bool,
}

/// kubectl's `--request-timeout`: a Go duration (`30s`, `1m`, `1h30m`), or plain seconds.
fn parse_request_timeout(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => sealant_core::go::parse_duration(text),
    }
}

impl ClientFlags {
    /// Whether any flag changes the kubeconfig.
    fn is_set(&self) -> bool {
        self.server.is_some()
            || self.token.is_some()
            || self.cluster.is_some()
            || self.user.is_some()
            || self.impersonate.is_some()
            || !self.impersonate_groups.is_empty()
            || self.impersonate_uid.is_some()
            || self.username.is_some()
            || self.password.is_some()
            || self.client_certificate.is_some()
            || self.client_key.is_some()
            || self.certificate_authority.is_some()
            || self.insecure_skip_tls_verify
            || self.tls_server_name.is_some()
            || self.proxy_url.is_some()
    }

    /// Apply the flags to `kubeconfig`'s entries that `context` (or the current one) names, as
    /// client-go's overrides do; `--server` with no kubeconfig makes one of its own.
    fn apply(&self, kubeconfig: &mut Kubeconfig, context: Option<&str>) -> KubeConfigOptions {
        use kube::config::{AuthInfo, Cluster, Context as KubeContext, NamedAuthInfo, NamedCluster, NamedContext};
        const FLAGS: &str = "sealant-flags";
        let context_name = context.map(str::to_owned).or_else(|| kubeconfig.current_context.clone());
        let current = context_name
            .as_deref()
            .and_then(|name| kubeconfig.contexts.iter().find(|c| c.name == name))
            .and_then(|c| c.context.clone());
        let mut options =
            KubeConfigOptions { context: context_name, cluster: self.cluster.clone(), user: self.user.clone() };
        let cluster_name = self.cluster.clone().or_else(|| current.as_ref().map(|c| c.cluster.clone()));
        let user_name = self.user.clone().or_else(|| current.as_ref().and_then(|c| c.user.clone()));
        let (cluster_name, user_name) = match (cluster_name, user_name) {
            (Some(cluster), Some(user)) => (cluster, user),
            _ => {
                // No usable context: one made of the flags alone (`--server ... --token ...`).
                kubeconfig.contexts.push(NamedContext {
                    name: FLAGS.into(),
                    context: Some(KubeContext {
                        cluster: FLAGS.into(),
                        user: Some(FLAGS.into()),
                        ..Default::default()
                    }),
                    other: Default::default(),
                });
                options.context = Some(FLAGS.into());
                (FLAGS.to_owned(), FLAGS.to_owned())
            }
        };
        if !kubeconfig.clusters.iter().any(|c| c.name == cluster_name) {
            kubeconfig.clusters.push(NamedCluster {
                name: cluster_name.clone(),
                cluster: Some(Cluster::default()),
                other: Default::default(),
            });
        }
        if !kubeconfig.auth_infos.iter().any(|a| a.name == user_name) {
            kubeconfig.auth_infos.push(NamedAuthInfo {
                name: user_name.clone(),
                auth_info: Some(AuthInfo::default()),
                other: Default::default(),
            });
        }
        if let Some(cluster) = kubeconfig.clusters.iter_mut().find(|c| c.name == cluster_name) {
            let cluster = cluster.cluster.get_or_insert_with(Cluster::default);
            if let Some(server) = &self.server {
                cluster.server = Some(server.clone());
            }
            if let Some(ca) = &self.certificate_authority {
                cluster.certificate_authority = Some(ca.clone());
                cluster.certificate_authority_data = None;
            }
            if self.insecure_skip_tls_verify {
                cluster.insecure_skip_tls_verify = Some(true);
                cluster.certificate_authority = None;
                cluster.certificate_authority_data = None;
            }
            if let Some(name) = &self.tls_server_name {
                cluster.tls_server_name = Some(name.clone());
            }
            if let Some(proxy) = &self.proxy_url {
                cluster.proxy_url = Some(proxy.clone());
            }
        }
        if let Some(user) = kubeconfig.auth_infos.iter_mut().find(|a| a.name == user_name) {
            let auth = user.auth_info.get_or_insert_with(AuthInfo::default);
            if let Some(token) = &self.token {
                auth.token = Some(token.clone().into());
                auth.token_file = None;
            }
            if let Some(username) = &self.username {
                auth.username = Some(username.clone());
            }
            if let Some(password) = &self.password {
                auth.password = Some(password.clone().into());
            }
            if let Some(file) = &self.client_certificate {
                auth.client_certificate = Some(file.clone());
                auth.client_certificate_data = None;
            }
            if let Some(file) = &self.client_key {
                auth.client_key = Some(file.clone());
                auth.client_key_data = None;
            }
            if let Some(who) = &self.impersonate {
                auth.impersonate = Some(who.clone());
            }
            if !self.impersonate_groups.is_empty() {
                auth.impersonate_groups = Some(self.impersonate_groups.clone());
            }
            if let Some(uid) = &self.impersonate_uid {
                auth.impersonate_uid = Some(uid.clone());
            }
        }
        options
    }
}

fn read_kubeconfig(args: &ClusterArgs) -> Result<Kubeconfig, kube::config::KubeconfigError> {
    let read = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    };
    match read {
        // kubectl --server needs no kubeconfig.
        Err(_) if args.client.server.is_some() => Ok(Kubeconfig::default()),
        other => other,
    }
}

/// Why the kubeconfig cannot be read, never with a line of it: the YAML parser's message shows
/// the lines around a syntax error, which hold tokens and keys, and would go to a CI log. As
/// kubectl does, the position only.
fn kubeconfig_error(error: kube::config::KubeconfigError) -> CliError {
    match error {
        kube::config::KubeconfigError::Parse(parse) => {
            let text = parse.to_string();
            let position = regex::Regex::new(r"line (\d+),? column (\d+)")
                .ok()
                .and_then(|r| r.captures(&text).map(|c| format!(" at line {}, column {}", &c[1], &c[2])))
                .unwrap_or_default();
            CliError::new(format!("cannot read the kubeconfig: it does not parse as one{position}"))
        }
        other => CliError::new("cannot read the kubeconfig").source(other),
    }
}

/// The namespace the kubeconfig's (current or chosen) context names, if it names one.
/// Whether there is a kubeconfig to read (or `--server`, which needs none).
pub fn kubeconfig_readable(args: &ClusterArgs) -> bool {
    read_kubeconfig(args).is_ok()
}

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
    let mut kubeconfig = read_kubeconfig(args).map_err(kubeconfig_error).hint(hint)?;
    let options = if args.client.is_set() {
        args.client.apply(&mut kubeconfig, args.context.as_deref())
    } else {
        KubeConfigOptions { context: args.context.clone(), ..Default::default() }
    };
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &options).await.context("cannot use the kubeconfig").hint(hint)?;
    if let Some(timeout) = args.client.request_timeout.filter(|t| !t.is_zero()) {
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
    }
    Client::try_from(config).context("cannot create a Kubernetes client").hint(hint)
}

fn get(path: &str) -> CliResult<http::Request<Vec<u8>>> {
    http::Request::get(path)
        .header(http::header::ACCEPT, "application/x-pem-file, */*")
        .body(Vec::new())
        .map_err(|e| CliError::new("cannot build the request").source(e))
}

/// What to check when the controller's Service cannot be reached.
fn service_hint(ns: &str, name: &str) -> String {
    format!(
        "check that the controller runs as Service {ns}/{name}; set --controller-name and --controller-namespace \
         (a Helm install is usually named sealed-secrets), or seal offline with --cert"
    )
}

/// The API server's service-proxy path to the controller (`.../services/http:NAME:PORT/proxy`),
/// with the port named as the Service's first port is, as kubeseal does.
async fn controller_proxy_base(client: &Client, args: &ClusterArgs) -> CliResult<String> {
    let (ns, name) = (&args.controller_namespace, &args.controller_name);
    let service: serde_json::Value = client
        .request(get(&format!("/api/v1/namespaces/{ns}/services/{name}"))?)
        .await
        .context(format!("cannot find the controller Service {ns}/{name}"))
        .hint(service_hint(ns, name))?;
    let port = service.pointer("/spec/ports/0/name").and_then(serde_json::Value::as_str).unwrap_or_default();
    Ok(format!("/api/v1/namespaces/{ns}/services/http:{name}:{port}/proxy"))
}

/// The PEM the controller serves at `/v1/cert.pem`, through the API server's service proxy.
pub async fn fetch_cert_from_cluster(args: &ClusterArgs) -> CliResult<String> {
    let client = cluster_client(args).await?;
    let base = controller_proxy_base(&client, args).await?;
    let (ns, name) = (&args.controller_namespace, &args.controller_name);
    client
        .request_text(get(&format!("{base}/v1/cert.pem"))?)
        .await
        .context(format!("cannot fetch the certificate from {ns}/{name}"))
        .hint(service_hint(ns, name))
}

/// Largest answer read from a certificate URL: a PEM certificate is a few kilobytes.
const MAX_URL_BODY: usize = 1 << 20;
/// Redirects followed from a certificate URL.
const MAX_REDIRECTS: usize = 5;
/// Time limits for a URL, unless `--request-timeout` says otherwise: to connect, and for all of
/// it (every redirect, the whole body).
const URL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const URL_TIMEOUT: Duration = Duration::from_secs(60);

/// GET an `http(s)://` URL: at most [`MAX_URL_BODY`] bytes, within the time limits, following
/// at most [`MAX_REDIRECTS`] redirects (never from https to http).
pub async fn fetch_url(url: &str, timeout: Option<Duration>) -> CliResult<String> {
    let timeout = timeout.filter(|t| !t.is_zero());
    let total = timeout.unwrap_or(URL_TIMEOUT);
    match tokio::time::timeout(total, follow(url, timeout.unwrap_or(URL_CONNECT_TIMEOUT))).await {
        Ok(answer) => answer,
        Err(_) => Err(CliError::new(format!("cannot fetch {url}: no answer within {} s", total.as_secs()))
            .hint("check the URL and that the server is reachable from here, or give --request-timeout")),
    }
}

async fn follow(url: &str, connect_timeout: Duration) -> CliResult<String> {
    use http_body_util::BodyExt as _;

    let mut current: http::Uri =
        url.parse().map_err(|e| CliError::usage(format!("{} is not a valid URL", quoted(url))).source(e))?;
    for _ in 0..=MAX_REDIRECTS {
        let (Some(scheme), Some(authority)) = (current.scheme_str(), current.authority()) else {
            return Err(CliError::usage(format!("{} is not an http(s) URL", quoted(&current.to_string()))));
        };
        let base: http::Uri = format!("{scheme}://{authority}")
            .parse()
            .map_err(|e| CliError::usage(format!("{} is not a valid URL", quoted(url))).source(e))?;
        let mut config = Config::new(base);
        config.default_namespace = String::new();
        config.connect_timeout = Some(connect_timeout);
        let client = Client::try_from(config).context("cannot create an HTTP client")?;
        let path = current.path_and_query().map_or("/", |p| p.as_str());
        let request = get(path)?.map(kube::client::Body::from);
        let response = client.send(request).await.context(format!("cannot fetch {current}")).hint(URL_HINT)?;
        let status = response.status();
        if status.is_redirection() {
            let next = redirect(&current, response.headers())?;
            if current.scheme() == Some(&http::uri::Scheme::HTTPS) && next.scheme() != Some(&http::uri::Scheme::HTTPS) {
                return Err(CliError::new(format!("{current} redirects to {next}, from https to http: not followed")));
            }
            current = next;
            continue;
        }
        if !status.is_success() {
            return Err(CliError::new(format!("cannot fetch {current}: the server answered {status}")).hint(URL_HINT));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_URL_BODY).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                CliError::new(format!("cannot fetch {current}: the answer is larger than {} KiB", MAX_URL_BODY >> 10))
                    .hint("a certificate is a few kilobytes: check the URL")
            } else {
                CliError::new(format!("cannot fetch {current}")).source(e).hint(URL_HINT)
            }
        })?;
        return String::from_utf8(body.to_bytes().to_vec())
            .map_err(|_| CliError::new(format!("{current} did not answer with text (a PEM certificate)")));
    }
    Err(CliError::new(format!("cannot fetch {url}: more than {MAX_REDIRECTS} redirects")))
}

const URL_HINT: &str = "check the URL and that the server is reachable from here";

/// Where a redirect answer points: its `Location`, absolute or relative to `from`.
fn redirect(from: &http::Uri, headers: &http::HeaderMap) -> CliResult<http::Uri> {
    let location = headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| CliError::new(format!("{from} redirects without a Location")))?;
    let next = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{}://{}{location}", from.scheme_str().unwrap_or("http"), from.authority().map_or("", |a| a.as_str()))
    } else {
        return Err(CliError::new(format!("{from} redirects to {}, which is not followed", quoted(location))));
    };
    next.parse()
        .map_err(|e| CliError::new(format!("{from} redirects to an invalid URL {}", quoted(location))).source(e))
}

/// The controller's certificate from its base URL (`--controller-url`).
pub async fn fetch_cert_from_controller(base: &str) -> CliResult<String> {
    fetch_url(&format!("{}/v1/cert.pem", base.trim_end_matches('/')), None).await
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
                url.parse().map_err(|e| CliError::usage(format!("{} is not a valid URL", quoted(url))).source(e))?;
            let client = Client::try_from(Config::new(uri)).context("cannot create an HTTP client")?;
            return Ok(ControllerApi { client, base: String::new() });
        }
        let client = cluster_client(args).await?;
        let base = controller_proxy_base(&client, args).await?;
        Ok(ControllerApi { client, base })
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
