//! Which CA certificates a function's TLS client reads at start.
//!
//! The SDK's HTTPS client loads the platform's CA certificates when a client is built,
//! through `rustls-native-certs`: unless `SSL_CERT_FILE` or `SSL_CERT_DIR` is set it reads
//! the distribution's bundle file *and* every file of its certificate directory. The
//! directory holds the same certificates again (Debian keeps one file per certificate beside
//! `ca-certificates.crt`; Amazon Linux, Lambda's OS, keeps `ca-bundle.crt` itself there), so
//! every certificate is read and decoded at least twice, a few milliseconds of every cold
//! start (`docs/benchmarks.md` has the figures).
//!
//! [`start_runtime`] therefore names the bundle `rustls-native-certs` would read anyway in
//! `SSL_CERT_FILE`, so the directory is not scanned. A certificate added only to the
//! directory and not to the bundle would no longer be trusted; setting `SSL_CERT_FILE` or
//! `SSL_CERT_DIR` in the function's environment keeps whatever it names. Each function's `main`
//! starts its runtime through it and logs what it named at debug level.

use std::ffi::OsString;
use std::path::PathBuf;

/// The variables `rustls-native-certs` (like OpenSSL) reads its certificate locations from.
pub const CERT_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Names the platform's CA bundle (see [`bundle_to_name`]), then runs `serve`, given the
/// bundle it named, on a new multi-threaded tokio runtime: each function's `main` calls it
/// before anything else starts a thread (see the SAFETY comment below).
pub fn start_runtime<T, E, F>(serve: impl FnOnce(Option<PathBuf>) -> F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<std::io::Error>,
{
    let bundle = name_ca_bundle();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(bundle))
}

/// Names the platform's CA bundle in `SSL_CERT_FILE`; answers the bundle it named.
#[allow(unsafe_code)]
fn name_ca_bundle() -> Option<PathBuf> {
    let bundle = bundle_to_name(|name| std::env::var_os(name), platform_bundle)?;
    // SAFETY: setting a variable races only with another thread reading or writing the
    // environment at the same time. `start_runtime` calls this before it builds the runtime,
    // and `main` calls `start_runtime` before the logger or anything else that spawns a
    // thread, so the process has one thread here.
    unsafe { std::env::set_var(CERT_VARIABLES[0], &bundle) };
    Some(bundle)
}

/// The platform's bundle file, found as `rustls-native-certs` itself finds it.
pub fn platform_bundle() -> Option<PathBuf> {
    openssl_probe::probe().cert_file
}

/// The bundle to name: none when either variable is set already (what it names is kept),
/// else the file `rustls-native-certs` itself would find, by the same probe, if any.
pub fn bundle_to_name(
    variable: impl Fn(&str) -> Option<OsString>,
    probe: impl FnOnce() -> Option<PathBuf>,
) -> Option<PathBuf> {
    if CERT_VARIABLES.iter().any(|name| variable(name).is_some()) {
        return None;
    }
    probe()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_location_the_environment_names_is_kept() {
        for set in CERT_VARIABLES {
            let variable = |name: &str| (name == set).then(|| OsString::from("/somewhere"));
            assert_eq!(
                bundle_to_name(variable, || Some(PathBuf::from("/bundle"))),
                None
            );
        }
    }

    #[test]
    fn otherwise_the_probed_bundle_is_named_if_there_is_one() {
        assert_eq!(
            bundle_to_name(|_| None, || Some(PathBuf::from("/bundle"))),
            Some(PathBuf::from("/bundle"))
        );
        assert_eq!(bundle_to_name(|_| None, || None), None);
    }

    /// What the module comment promises on this platform: the bundle alone holds every
    /// certificate of the directory scan, except Debian's `ssl-cert-snakeoil.pem` (the host's
    /// own self-signed certificate for its local services, not a certificate authority: the
    /// bundle leaves it out on purpose, and trusting it was never meant).
    #[test]
    fn the_bundle_alone_trusts_every_authority_of_the_directory() {
        let probe = openssl_probe::probe();
        let Some(bundle) = probe.cert_file else {
            eprintln!("no CA bundle on this machine: nothing to compare");
            return;
        };
        let from_bundle = rustls_native_certs::load_certs_from_paths(Some(&bundle), None);
        assert!(from_bundle.errors.is_empty(), "{:?}", from_bundle.errors);
        assert!(
            !from_bundle.certs.is_empty(),
            "{bundle:?} holds no certificate"
        );
        let in_bundle: HashSet<_> = from_bundle.certs.iter().collect();
        let mut compared = 0;
        for dir in &probe.cert_dir {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                // Its hash-named link too.
                let target = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if target
                    .file_name()
                    .is_some_and(|n| n == "ssl-cert-snakeoil.pem")
                {
                    continue;
                }
                let from_file = rustls_native_certs::load_certs_from_paths(Some(&path), None);
                for cert in &from_file.certs {
                    assert!(in_bundle.contains(cert), "{path:?} is not in {bundle:?}");
                    compared += 1;
                }
            }
        }
        eprintln!("{compared} certificates of the directory found in {bundle:?}");
    }
}
