//! What an [`Acme`](super::Acme) handle shares with its renewal tasks: the
//! certificates served now, each domain's status, the pending challenges
//! and the account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use instant_acme::{Account, CertificateIdentifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, Der, PrivateKeyDer};
use tracing::warn;
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::ext::pkix::AuthorityKeyIdentifier;

use super::challenges::Challenges;
use super::storage::Storage;
use super::{AcmeSettings, CertificateStatus};
use crate::tls::provider;

/// A certificate obtained from the CA, ready to serve.
#[derive(Debug)]
pub(super) struct Issued {
    /// The chain and key, for rustls.
    pub(super) key: Arc<CertifiedKey>,
    /// The leaf's `notBefore`.
    pub(super) not_before: SystemTime,
    /// The leaf's `notAfter`.
    pub(super) not_after: SystemTime,
    /// The leaf's ARI identifier (authority key id and serial), when it
    /// has an authority key identifier.
    pub(super) id: Option<CertificateIdentifier<'static>>,
}

impl Issued {
    /// Parse a PEM chain (leaf first) and its PEM key.
    pub(super) fn from_pem(chain: &str, key: &str) -> Result<Issued, String> {
        let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the chain is not PEM: {e}"))?;
        let leaf = chain.first().ok_or("the chain holds no certificate")?;
        let parsed = Certificate::from_der(leaf.as_ref())
            .map_err(|e| format!("the leaf is not X.509: {e}"))?;
        let validity = &parsed.tbs_certificate.validity;
        let (not_before, not_after) = (
            validity.not_before.to_system_time(),
            validity.not_after.to_system_time(),
        );
        let id = ari_identifier(&parsed);
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| format!("the key is not PEM: {e}"))?;
        let key = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| format!("the key does not belong to the certificate: {e}"))?;
        Ok(Issued {
            key: Arc::new(key),
            not_before,
            not_after,
            id,
        })
    }
}

/// The certificate's identifier for ARI (RFC 9773 section 4.1): the bytes
/// of its authority key identifier and of its serial number.
fn ari_identifier(leaf: &Certificate) -> Option<CertificateIdentifier<'static>> {
    let aki = leaf
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|ext| ext.extn_id == AuthorityKeyIdentifier::OID)
        .find_map(|ext| AuthorityKeyIdentifier::from_der(ext.extn_value.as_bytes()).ok())?;
    let key_id = aki.key_identifier?;
    let serial = leaf.tbs_certificate.serial_number.as_bytes();
    Some(
        CertificateIdentifier::new(Der::from_slice(key_id.as_bytes()), Der::from_slice(serial))
            .into_owned(),
    )
}

/// The state shared by the handle and the tasks.
pub(super) struct Shared {
    pub(super) settings: AcmeSettings,
    pub(super) storage: Storage,
    pub(super) challenges: Challenges,
    /// Served certificates by domain (lower case).
    served: RwLock<HashMap<String, Arc<Issued>>>,
    /// Each domain's status, by domain as configured.
    statuses: Mutex<HashMap<String, CertificateStatus>>,
    /// The account, once made or loaded (shared by the domains' tasks).
    pub(super) account: tokio::sync::Mutex<Option<Account>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Nothing served yet, every domain without a certificate.
    pub(super) fn new(settings: AcmeSettings) -> Shared {
        let statuses = settings
            .domains
            .iter()
            .map(|domain| (domain.clone(), CertificateStatus::new(domain)))
            .collect();
        Shared {
            storage: Storage::new(&settings),
            settings,
            challenges: Challenges::default(),
            served: RwLock::new(HashMap::new()),
            statuses: Mutex::new(statuses),
            account: tokio::sync::Mutex::new(None),
        }
    }

    /// Serve what an earlier run stored, skipping (with a warning) what
    /// cannot be read or has expired.
    pub(super) fn load_stored(&self) {
        for domain in &self.settings.domains {
            match self.stored(domain) {
                Ok(Some(issued)) => self.serve(domain, issued),
                Ok(None) => {}
                Err(why) => warn!(
                    domain = %domain,
                    "the stored ACME certificate is not used ({why}); a new one will be obtained"
                ),
            }
        }
    }

    fn stored(&self, domain: &str) -> Result<Option<Issued>, String> {
        let Some((chain, key)) = self
            .storage
            .certificate(domain)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let issued = Issued::from_pem(&chain, &key)?;
        if issued.not_after <= SystemTime::now() {
            return Err("it has expired".into());
        }
        Ok(Some(issued))
    }

    /// Serve `issued` for `domain` to new handshakes.
    pub(super) fn serve(&self, domain: &str, issued: Issued) {
        self.update(domain, |status| {
            status.not_before = Some(issued.not_before);
            status.not_after = Some(issued.not_after);
        });
        let mut served = self.served.write().unwrap_or_else(|p| p.into_inner());
        served.insert(domain.to_ascii_lowercase(), Arc::new(issued));
    }

    /// The certificate served for `domain`, if any.
    pub(super) fn issued(&self, domain: &str) -> Option<Arc<Issued>> {
        let served = self.served.read().unwrap_or_else(|p| p.into_inner());
        served.get(&domain.to_ascii_lowercase()).cloned()
    }

    /// The key to serve for the server name `name`.
    pub(super) fn certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let served = self.served.read().unwrap_or_else(|p| p.into_inner());
        if let Some(issued) = served.get(name) {
            return Some(Arc::clone(&issued.key));
        }
        // Names from clients may differ in case.
        served
            .get(&name.to_ascii_lowercase())
            .map(|issued| Arc::clone(&issued.key))
    }

    /// The first configured domain's certificate that is served.
    pub(super) fn any_certificate(&self) -> Option<Arc<CertifiedKey>> {
        self.settings
            .domains
            .iter()
            .find_map(|domain| self.certificate(&domain.to_ascii_lowercase()))
    }

    /// Change `domain`'s status.
    pub(super) fn update(&self, domain: &str, change: impl FnOnce(&mut CertificateStatus)) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let status = statuses
            .entry(domain.to_string())
            .or_insert_with(|| CertificateStatus::new(domain));
        change(status);
    }

    /// Every domain's status in the configured order.
    pub(super) fn status(&self) -> Vec<CertificateStatus> {
        let statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        self.settings
            .domains
            .iter()
            .filter_map(|domain| statuses.get(domain).cloned())
            .collect()
    }
}

impl CertificateStatus {
    fn new(domain: &str) -> Self {
        CertificateStatus {
            domain: domain.to_string(),
            not_after: None,
            not_before: None,
            next_attempt: None,
            last_error: None,
            failures: 0,
            ari: false,
        }
    }
}
