//! Obtaining one domain's certificate: the account, an order, its
//! challenge answered by our own listeners, the CSR, the chain; then the
//! chain and key stored.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, Problem, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use tracing::{info, warn};

use super::http_client::DirectoryClient;
use super::state::{Issued, Shared};
use super::{Challenge, challenges::Challenges};

/// How long the CA may take to validate, and then to issue.
const CA_PATIENCE: Duration = Duration::from_secs(120);

/// The problem type of an account the CA does not know (it was deleted,
/// or the CA is a test CA that forgets on restart).
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// Obtain a certificate for `domain`, store it, and return it (the caller
/// serves it). `replaces` names the certificate it renews, for a CA with
/// renewal information. The error says what failed, in words.
pub(super) async fn obtain(
    shared: &Shared,
    domain: &str,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Issued, String> {
    let current = account(shared).await?;
    let (chain, key) = match order(shared, &current, domain, replaces.clone()).await {
        Err(Failure::AccountUnknown) => {
            // The CA forgot the account: make a new one, once.
            *shared.account.lock().await = None;
            shared
                .storage
                .forget_account()
                .map_err(|e| format!("forgetting the stored account: {e}"))?;
            let renewed = account(shared).await?;
            order(shared, &renewed, domain, replaces)
                .await
                .map_err(Failure::into_text)?
        }
        other => other.map_err(Failure::into_text)?,
    };
    let issued = Issued::from_pem(&chain, &key)
        .map_err(|e| format!("the CA's certificate cannot be served: {e}"))?;
    // Served whatever happens to the disk: ordering it again would count
    // against the CA's limits.
    if let Err(e) = shared.storage.save_certificate(domain, &chain, &key) {
        warn!(domain = %domain, error = %e, "could not store the new certificate; serving it, and a restart will order another");
    }
    info!(domain = %domain, "obtained a certificate from the ACME CA");
    Ok(issued)
}

/// Why an order failed.
enum Failure {
    /// The CA does not know our account.
    AccountUnknown,
    /// Anything else, in words.
    Other(String),
}

impl Failure {
    fn into_text(self) -> String {
        match self {
            Failure::AccountUnknown => "the CA does not know the account".into(),
            Failure::Other(text) => text,
        }
    }

    /// `context`, then what the CA or the network said.
    fn from_acme(context: &str, e: instant_acme::Error) -> Failure {
        match e {
            instant_acme::Error::Api(problem)
                if problem.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST) =>
            {
                Failure::AccountUnknown
            }
            instant_acme::Error::Api(problem) => {
                Failure::Other(format!("{context}: {}", problem_text(&problem)))
            }
            other => Failure::Other(format!("{context}: {}", error_text(&other))),
        }
    }
}

/// The account: already loaded, stored by an earlier run, or made now
/// (and stored).
pub(super) async fn account(shared: &Shared) -> Result<Account, String> {
    let mut slot = shared.account.lock().await;
    if let Some(account) = &*slot {
        return Ok(account.clone());
    }
    let settings = &shared.settings;
    let reaching = |e: instant_acme::Error| {
        format!(
            "reaching the ACME directory {}: {}",
            settings.directory,
            error_text(&e)
        )
    };
    let client = DirectoryClient::new(settings.directory_ca.as_deref())
        .map_err(|e| format!("the directory's trust: {e}"))?;
    let builder = Account::builder_with_http(Box::new(client));
    let stored = shared
        .storage
        .account()
        .map_err(|e| format!("the stored account: {e}"))?;
    let account = match stored {
        Some(credentials) => builder
            .from_credentials(credentials)
            .await
            .map_err(reaching)?,
        None => {
            let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
            let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
            let new = NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            };
            let (account, credentials) = builder
                .create(&new, settings.directory.clone(), None)
                .await
                .map_err(reaching)?;
            // Kept in memory whatever happens to the disk (a new account
            // per attempt would count against the CA's limits).
            if let Err(e) = shared.storage.save_account(&credentials) {
                warn!(error = %e, "could not store the ACME account; a restart will make another");
            }
            account
        }
    };
    *slot = Some(account.clone());
    Ok(account)
}

/// One order for `domain`, from creation to the chain: (chain, key) PEM.
async fn order(
    shared: &Shared,
    account: &Account,
    domain: &str,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<(String, String), Failure> {
    let identifiers = [Identifier::Dns(domain.to_string())];
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(replaces) = replaces {
        new_order = new_order.replaces(replaces);
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(|e| Failure::from_acme("placing the order", e))?;
    let challenge = shared.settings.challenge;
    let mut answers = Answers {
        challenges: &shared.challenges,
        domain,
        tokens: Vec::new(),
        tls_alpn: false,
    };
    answer_challenges(&mut order, challenge, &mut answers).await?;
    let patience = RetryPolicy::new().timeout(CA_PATIENCE);
    match order.poll_ready(&patience).await {
        Ok(OrderStatus::Ready) => {}
        // The order went invalid, or carries the CA's problem.
        Ok(_) | Err(instant_acme::Error::Api(_)) => {
            let why = why_invalid(&mut order).await;
            return Err(Failure::Other(format!(
                "{domain} failed {} validation: {why}",
                challenge.name()
            )));
        }
        Err(e) => return Err(Failure::from_acme("waiting for validation", e)),
    }
    drop(answers);
    let (csr, key) = signing_request(domain).map_err(Failure::Other)?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| Failure::from_acme("finalizing the order", e))?;
    let chain = order
        .poll_certificate(&patience)
        .await
        .map_err(|e| Failure::from_acme("downloading the certificate", e))?;
    Ok((chain, key))
}

/// Put an answer in place for each pending authorization of `order` and
/// tell the CA to validate it.
async fn answer_challenges(
    order: &mut Order,
    challenge: Challenge,
    answers: &mut Answers<'_>,
) -> Result<(), Failure> {
    let kind = match challenge {
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        Challenge::Http01 => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization
            .map_err(|e| Failure::from_acme("reading the order's authorizations", e))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Failure::Other(format!(
                    "the CA's authorization for {} is {other:?}",
                    answers.domain
                )));
            }
        }
        let Some(mut handle) = authorization.challenge(kind.clone()) else {
            return Err(Failure::Other(format!(
                "the CA offers no {} challenge for {}",
                challenge.name(),
                answers.domain
            )));
        };
        let key_authorization = handle.key_authorization();
        match challenge {
            Challenge::Http01 => answers.put_http(&handle.token, key_authorization.as_str()),
            Challenge::TlsAlpn01 => answers
                .put_tls_alpn(key_authorization.digest().as_ref())
                .map_err(Failure::Other)?,
        }
        handle
            .set_ready()
            .await
            .map_err(|e| Failure::from_acme("asking the CA to validate", e))?;
    }
    Ok(())
}

/// What the CA said about a failed validation.
async fn why_invalid(order: &mut Order) -> String {
    let mut reasons = Vec::new();
    if let Some(problem) = &order.state().error {
        reasons.push(problem_text(problem));
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        reasons.extend(
            state
                .challenges
                .iter()
                .filter_map(|c| c.error.as_ref())
                .map(problem_text),
        );
    }
    if reasons.is_empty() {
        return "the CA marked the order invalid and gave no reason".into();
    }
    reasons.join("; ")
}

/// A new key and a CSR naming `domain`: (CSR DER, key PEM).
fn signing_request(domain: &str) -> Result<(Vec<u8>, String), String> {
    let failed = |e: rcgen::Error| format!("making the certificate signing request: {e}");
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::new(vec![domain.to_string()]).map_err(failed)?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(failed)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

/// A CA's problem document in words: its detail, then its type.
fn problem_text(problem: &Problem) -> String {
    let detail = problem.detail.as_deref().unwrap_or("no detail");
    let kind = problem
        .r#type
        .as_deref()
        .map(|t| t.trim_start_matches("urn:ietf:params:acme:error:"));
    match kind {
        Some(kind) => format!("{detail} ({kind})"),
        None => detail.to_string(),
    }
}

/// An error with its causes, for a log line.
fn error_text(e: &instant_acme::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The answers an order put in place, taken away when it is done (or
/// dropped half way).
struct Answers<'a> {
    challenges: &'a Challenges,
    domain: &'a str,
    tokens: Vec<String>,
    tls_alpn: bool,
}

impl Answers<'_> {
    fn put_http(&mut self, token: &str, key_authorization: &str) {
        self.challenges.put_http(token, key_authorization);
        self.tokens.push(token.to_string());
    }

    fn put_tls_alpn(&mut self, digest: &[u8]) -> Result<(), String> {
        self.challenges.put_tls_alpn(self.domain, digest)?;
        self.tls_alpn = true;
        Ok(())
    }
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.forget_http(token);
        }
        if self.tls_alpn {
            self.challenges.forget_tls_alpn(self.domain);
        }
    }
}
