//! TLS to a real PostgreSQL that offers it with a certificate made for the test
//! (scripts/postgres.sh makes an authority and a server certificate for `localhost` and
//! 127.0.0.1, and names the authority in `WEIR_TEST_PG_CA`). Each mode is checked on what
//! the server says of the connection (`pg_stat_ssl`), and the checking modes against an
//! impostor: a certificate no trusted root signed, or one for another name.

use weir_db::postgres::Connector;

/// The test database's URL and authority file, or `None` when PostgreSQL tests are off.
fn setup() -> Option<(String, String)> {
    match (
        std::env::var("WEIR_TEST_DATABASE_URL"),
        std::env::var("WEIR_TEST_PG_CA"),
    ) {
        (Ok(url), Ok(ca)) => Some((url, ca)),
        _ if std::env::var("WEIR_TEST_POSTGRES").as_deref() == Ok("skip") => None,
        _ => panic!(
            "WEIR_TEST_DATABASE_URL and WEIR_TEST_PG_CA are not set: run scripts/test.sh \
             (it starts PostgreSQL with TLS), or set WEIR_TEST_POSTGRES=skip"
        ),
    }
}

/// Whether the server sees the connection made from `url` as encrypted.
async fn encrypted(url: &str) -> Result<bool, weir_db::DbError> {
    let client = Connector::parse(url)?.connect().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// `url` with `query` added.
fn with(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

#[tokio::test]
async fn each_sslmode_does_what_libpq_says() {
    let Some((url, ca)) = setup() else { return };
    assert!(
        encrypted(&url).await.unwrap(),
        "prefer (the default) encrypts when offered"
    );
    assert!(!encrypted(&with(&url, "sslmode=disable")).await.unwrap());
    assert!(encrypted(&with(&url, "sslmode=prefer")).await.unwrap());
    assert!(encrypted(&with(&url, "sslmode=require")).await.unwrap());
    let verified = with(&url, &format!("sslmode=verify-full&sslrootcert={ca}"));
    assert!(
        encrypted(&verified).await.unwrap(),
        "the certificate names 127.0.0.1"
    );
    let by_name = verified.replace("127.0.0.1", "localhost");
    assert!(encrypted(&by_name).await.unwrap(), "and localhost");
}

#[tokio::test]
async fn verification_refuses_an_impostor() {
    let Some((url, ca)) = setup() else { return };
    // No sslrootcert: the Mozilla roots, which did not sign the test's certificate.
    let untrusted = encrypted(&with(&url, "sslmode=verify-full")).await;
    assert!(
        untrusted.is_err(),
        "an unknown authority's certificate was accepted"
    );
    let untrusted = encrypted(&with(&url, "sslmode=verify-ca")).await;
    assert!(untrusted.is_err());

    // The right authority, but the server is reached as a name its certificate does not
    // give: verify-full refuses, verify-ca (which checks the chain only) accepts.
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    let other_name = |mode: &str| {
        format!(
            "host=db.weir.test hostaddr=127.0.0.1 port={port} user=weir dbname=postgres \
             sslmode={mode} sslrootcert={ca}"
        )
    };
    let error = encrypted(&other_name("verify-full")).await.unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("cert")
            || error.to_string().to_lowercase().contains("name"),
        "{error}"
    );
    assert!(encrypted(&other_name("verify-ca")).await.unwrap());
}

#[test]
fn an_unreadable_root_file_is_named_before_connecting() {
    let error = Connector::parse(
        "postgres://weir@127.0.0.1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    )
    .unwrap_err();
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
}
