//! End-to-end smoke: two components authenticate and exchange stanzas.

use test_support::comp::Comp;
use test_support::daemon::Daemon;
use test_support::inspect::attr;

const CONFIG: &str = r#"
[components."a.example"]
secret = "sa"
[components."b.example"]
secret = "sb"
"#;

#[tokio::test]
async fn a_to_b_and_back() {
    let d = Daemon::start(CONFIG);
    let mut a = Comp::login(d.addr(), "a.example", "sa").await;
    let mut b = Comp::login(d.addr(), "b.example", "sb").await;
    let m = "<message from='x@a.example/r' to='y@b.example' id='1' type='chat'><body>hello</body></message>";
    a.send(m).await;
    assert_eq!(b.stanza().await, m);
    let r = "<message from='y@b.example' to='x@a.example/r' id='2'><body>back</body></message>";
    b.send(r).await;
    assert_eq!(a.stanza().await, r);
    // header shape
    let h = a.header.clone().unwrap();
    assert_eq!(attr(&h, "from").as_deref(), Some("a.example"));
    assert!(a.stream_id.as_ref().unwrap().len() >= 32);
    drop(a);
    drop(b);
    let mut d = d;
    d.stop_ok();
}
