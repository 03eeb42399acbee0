//! Unmodified blocking ureq — with rustls for HTTPS — in greenlets, through the `patch`
//! feature: `verdant::patch::install()` makes libc's socket calls and name look-ups
//! cooperative, so every URL given is fetched in a greenlet of its own, all at once on
//! one thread.
//!
//! ```text
//! cargo run --release --features patch --example patch_ureq -- http://127.0.0.1:8080/
//! cargo run --release --example https_hello -- 127.0.0.1:8443 --ca-out /tmp/verdant-ca.pem &
//! cargo run --release --features patch --example patch_ureq -- --ca /tmp/verdant-ca.pem https://localhost:8443/
//! ```
//!
//! Without `--ca`, HTTPS servers are checked against the webpki roots built into ureq.
//! Bodies are read with ureq's own cap (10 MB); each response's status and length are
//! printed in the order given.

use std::io;
use std::time::Duration;

use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// An agent trusting the certificates of the PEM file `ca`, or ureq's built-in roots.
fn agent(ca: Option<&str>) -> io::Result<ureq::Agent> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = ca {
        let pem = std::fs::read(path)?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let PemItem::Certificate(cert) = item.map_err(io::Error::other)? {
                certs.push(cert);
            }
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    Ok(config.new_agent())
}

/// Fetches `url` with plain blocking ureq calls: the hooks make them park this greenlet.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<(u16, usize), ureq::Error> {
    let mut response = agent.get(url).call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_vec()?;
    Ok((status, body.len()))
}

fn main() -> io::Result<()> {
    verdant::patch::install();
    let (mut ca, mut urls) = (None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => ca = args.next(),
            _ => urls.push(arg),
        }
    }
    if urls.is_empty() {
        return Err(io::Error::other("usage: patch_ureq [--ca FILE] URL..."));
    }
    let agent = agent(ca.as_deref())?;
    let fetches: Vec<_> = urls
        .iter()
        .map(|url| {
            let (agent, url) = (agent.clone(), url.clone());
            verdant::spawn(move || fetch(&agent, &url))
        })
        .collect();
    for (url, fetch) in urls.iter().zip(fetches) {
        match fetch.take().expect("a fetch does not panic") {
            Ok((status, bytes)) => println!("{url}: {status} ({bytes} bytes)"),
            Err(err) => println!("{url}: {err}"),
        }
    }
    Ok(())
}
