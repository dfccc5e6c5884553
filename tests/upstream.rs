//! The gateway in front of a real Prosody (docs/behaviour.md#upstream): the router runs
//! as a child process with `[upstream]` pointing at Prosody's component port,
//! raw XEP-0114 components connect to the router, and a raw c2s user talks to
//! them through Prosody. No mocks.
//!
//! Every test first calls `prosody::require()` (skips without Prosody, fails
//! under CI=true). Prosody, the router and the SIGSTOP in the dead-link test
//! are undone by Drop guards, also when a test fails. The real backoff is used
//! (1 s, doubling); only the dead-link tests shorten the liveness interval
//! (`[upstream] keepalive_interval`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use test_support::c2s::C2s;
use test_support::comp::{Comp, Got};
use test_support::daemon::{down_line, mib, router_config, up_line, Daemon, RssPeak};
use test_support::events::event;
use test_support::inspect::{
    attr, element_name, is_body, stanza_error_condition, text_of, with_id,
};
use test_support::prosody::{self, Prosody, ProsodyOptions};

const T: Duration = Duration::from_secs(10);
/// Traffic flows again this soon after Prosody is back (backoff capped at 30 s).
const RECOVERY: Duration = Duration::from_secs(35);
const HOST: &str = "localhost";
const COMP: &str = "comp.localhost";
const SECRET: &str = "s";
const NEW: &str = "new.localhost";
const NEW_SECRET: &str = "n";

fn opts() -> ProsodyOptions {
    ProsodyOptions::new(HOST)
        .component(COMP, SECRET)
        .user("alice", "alicepw")
}

fn start_prosody(opts: &ProsodyOptions) -> Prosody {
    Prosody::start(opts).unwrap_or_else(|e| panic!("Prosody failed to start: {e}"))
}

/// `config` with `[upstream] keepalive_interval` set to `ms` (whole seconds).
fn with_keepalive_interval(config: &str, ms: u64) -> String {
    config.replacen(
        "[upstream]\n",
        &format!("[upstream]\nkeepalive_interval = {}\n", ms / 1000),
        1,
    )
}

/// An `Upstream server unavailable` bounce (docs/behaviour.md#routing).
fn assert_upstream_bounce(s: &str) {
    assert_eq!(attr(s, "type").as_deref(), Some("error"), "{s}");
    assert!(s.contains("<error type='wait'>"), "{s}");
    assert!(s.contains("<remote-server-timeout"), "{s}");
    assert!(s.contains("Upstream server unavailable"), "{s}");
}

/// Prosody's own bounce for a component it sees offline.
fn assert_component_unavailable(s: &str) {
    assert_eq!(attr(s, "type").as_deref(), Some("error"), "{s}");
    assert!(s.contains("<remote-server-timeout"), "{s}");
    assert!(s.contains("Component unavailable"), "{s}");
}

async fn login_c2s(p: &Prosody, user: &str, password: &str) -> C2s {
    C2s::connect(p.c2s_port, user, HOST, password)
        .await
        .unwrap_or_else(|e| panic!("c2s login of {user}: {e}\n{}", p.log_tail()))
}

/// The component sends a message to `to`; the c2s user must get it.
async fn comp_to_user(comp: &mut Comp, from: &str, user: &mut C2s, body: &str) {
    comp.send(&format!(
        "<message from='{from}' to='{}' type='chat'><body>{body}</body></message>",
        user.jid
    ))
    .await;
    let got = user
        .recv_until(|s| is_body(s, body), T)
        .await
        .unwrap_or_else(|| panic!("{} did not get {body:?} from {from}", user.jid));
    assert_eq!(attr(&got, "from").as_deref(), Some(from), "{got}");
}

/// The c2s user sends a message to `to`; the component must get it.
async fn user_to_comp(user: &mut C2s, to: &str, comp: &mut Comp, body: &str) {
    user.send(&format!(
        "<message to='{to}' type='chat'><body>{body}</body></message>"
    ))
    .await;
    let got = comp
        .recv_until(|s| is_body(s, body), T)
        .await
        .unwrap_or_else(|| panic!("{to} did not get {body:?} from {}", user.jid));
    assert_eq!(
        attr(&got, "from").as_deref(),
        Some(user.jid.as_str()),
        "{got}"
    );
    assert_eq!(attr(&got, "to").as_deref(), Some(to), "{got}");
}

/// The user's message to `to` comes back as Prosody's "Component unavailable".
async fn user_gets_component_unavailable(user: &mut C2s, to: &str, id: &str) {
    user.send(&format!(
        "<message to='{to}' type='chat' id='{id}'><body>anyone?</body></message>"
    ))
    .await;
    let err = user
        .recv_until(with_id("message", id), T)
        .await
        .unwrap_or_else(|| panic!("no bounce for {id}"));
    assert_component_unavailable(&err);
}

/// The component's own connection is still open: nothing arrives, no close.
async fn assert_comp_still_open(c: &mut Comp, t: Duration) {
    match c.recv_timeout(t).await {
        Got::Timeout => {}
        other => {
            panic!("expected the component's connection to stay open and quiet, got {other:?}")
        }
    }
}

/// SIGCONT on drop, so a test that fails while Prosody is stopped still lets
/// Prosody's own guard terminate it quickly.
struct ContOnDrop(i32);

impl Drop for ContOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_iqs_flow_both_ways_through_the_router() {
    if !prosody::require() {
        return;
    }
    let p = start_prosody(&opts());
    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    let t_up = d.expect_log_count(up_line(COMP), 1, T);
    eprintln!("upstream link up {t_up:?} after the component authenticated");
    let mut alice = login_c2s(&p, "alice", "alicepw").await;

    // A message to the component's domain, and the component's reply.
    user_to_comp(&mut alice, COMP, &mut comp, "hello component").await;
    comp_to_user(&mut comp, COMP, &mut alice, "hello alice").await;

    // iq user -> component -> user.
    alice
        .send(&format!(
            "<iq type='get' id='d1' to='{COMP}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let req = comp
        .expect_stanza(with_id("iq", "d1"), T, "component got no disco#info")
        .await;
    assert_eq!(attr(&req, "from").as_deref(), Some(alice.jid.as_str()));
    comp.send(&format!(
        "<iq type='result' id='d1' from='{COMP}' to='{}'><query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='gateway' type='test' name='Routed'/></query></iq>",
        alice.jid
    ))
    .await;
    let res = alice
        .expect_stanza(with_id("iq", "d1"), T, "alice got no disco#info result")
        .await;
    assert_eq!(attr(&res, "type").as_deref(), Some("result"), "{res}");
    assert!(res.contains("Routed"), "{res}");

    // iq component -> user -> component.
    comp.send(&format!(
        "<iq type='get' id='p1' from='{COMP}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        alice.jid
    ))
    .await;
    let req = alice
        .expect_stanza(with_id("iq", "p1"), T, "alice got no ping")
        .await;
    assert_eq!(attr(&req, "from").as_deref(), Some(COMP));
    alice
        .send(&format!("<iq type='result' id='p1' to='{COMP}'/>"))
        .await;
    let res = comp
        .expect_stanza(with_id("iq", "p1"), T, "component got no ping result")
        .await;
    assert_eq!(attr(&res, "type").as_deref(), Some("result"), "{res}");
    assert_eq!(attr(&res, "from").as_deref(), Some(alice.jid.as_str()));

    // iq component -> server.
    comp.send(&format!(
        "<iq type='get' id='v1' from='{COMP}' to='{HOST}'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let res = comp
        .expect_stanza(with_id("iq", "v1"), T, "component got no version result")
        .await;
    assert_eq!(attr(&res, "type").as_deref(), Some("result"), "{res}");
    assert_eq!(text_of(&res, "name").as_deref(), Some("Prosody"), "{res}");

    // A jabber:client stanza from the component: Prosody 0.12 would drop it
    // silently; the router rewrites its namespace and it arrives.
    comp.send(
        "<message xmlns='jabber:client' from='bot@comp.localhost' to='alice@localhost' type='chat'>\
         <body>client namespace</body></message>",
    )
    .await;
    let got = alice
        .recv_until(|s| is_body(s, "client namespace"), T)
        .await
        .unwrap_or_else(|| panic!("jabber:client message lost\n{}", p.log_tail()));
    assert_eq!(attr(&got, "from").as_deref(), Some("bot@comp.localhost"));

    assert_eq!(d.count_log(event("session.authenticated")), 1);
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
    assert!(
        !p.warnings().contains("Unhandled"),
        "Prosody dropped something:\n{}",
        p.warnings()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_restart_is_invisible_to_the_component_except_bounces() {
    if !prosody::require() {
        return;
    }
    let mut p = start_prosody(&opts());
    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    d.expect_log_count(up_line(COMP), 1, T);
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    comp_to_user(&mut comp, COMP, &mut alice, "before").await;

    let t_stop = Instant::now();
    p.stop();
    let stopped = t_stop.elapsed();
    let noticed = d.expect_log_count(down_line(COMP), 1, T);
    eprintln!("Prosody stopped in {stopped:?}; link down logged {noticed:?} later");

    // While Prosody is down: bounces, and the component stays connected.
    comp.send(
        "<message from='comp.localhost' to='alice@localhost' id='b1' type='chat'><body>lost?</body></message>",
    )
    .await;
    let bounce = comp
        .expect_stanza(
            with_id("message", "b1"),
            T,
            "no bounce while Prosody is down",
        )
        .await;
    assert_upstream_bounce(&bounce);
    assert_eq!(attr(&bounce, "from").as_deref(), Some("alice@localhost"));
    assert_eq!(attr(&bounce, "to").as_deref(), Some(COMP));
    comp.send(&format!(
        "<iq from='{COMP}' to='{HOST}' id='b2' type='get'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let bounce = comp
        .expect_stanza(with_id("iq", "b2"), T, "no iq bounce while Prosody is down")
        .await;
    assert_upstream_bounce(&bounce);
    // Let a few retries fail (1 s, 2 s): still one log line per reason.
    std::thread::sleep(Duration::from_secs(3));

    let t_restart = Instant::now();
    p.restart()
        .unwrap_or_else(|e| panic!("Prosody restart failed: {e}"));
    let prosody_ready = t_restart.elapsed();
    let link_up = d.expect_log_count(up_line(COMP), 2, RECOVERY) + prosody_ready;
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    comp_to_user(&mut comp, COMP, &mut alice, "after").await;
    user_to_comp(&mut alice, COMP, &mut comp, "after, inbound").await;
    let flowing = t_restart.elapsed();
    eprintln!(
        "Prosody restart took {prosody_ready:?}; link up {link_up:?} and traffic flowing {flowing:?} after the restart began"
    );
    assert!(flowing < RECOVERY, "traffic flowed only after {flowing:?}");

    // Same component connection throughout; one log line per state change.
    assert_eq!(
        d.count_log(event("session.authenticated")),
        1,
        "{}",
        d.logs()
    );
    let downs = d.count_log(down_line(COMP));
    assert!(
        (1..=3).contains(&downs),
        "{downs} 'down' lines for one outage:\n{}",
        d.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_unknown_to_prosody_routes_locally_and_connects_once_prosody_knows_it() {
    if !prosody::require() {
        return;
    }
    // mod_reload_components README, example 2: the router serves a domain
    // Prosody has no Component for yet.
    let mut p = start_prosody(&opts());
    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, ""), (NEW, NEW_SECRET, "")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    let mut newc = Comp::login(d.addr(), NEW, NEW_SECRET).await;
    d.expect_log_count(up_line(COMP), 1, T);
    d.expect_log_count(down_line(NEW).with("condition", "host-unknown"), 1, T);

    // Local routing between the router's components works meanwhile.
    newc.send(&format!(
        "<message from='bot@{NEW}' to='{COMP}' id='l1'><body>local</body></message>"
    ))
    .await;
    let got = comp
        .expect_stanza(|s| is_body(s, "local"), T, "local routing failed")
        .await;
    assert_eq!(attr(&got, "from").as_deref(), Some("bot@new.localhost"));
    // Upstream-bound traffic bounces.
    newc.send(&format!(
        "<message from='{NEW}' to='alice@localhost' id='u1'><body>x</body></message>"
    ))
    .await;
    let bounce = newc
        .expect_stanza(
            with_id("message", "u1"),
            T,
            "no bounce for the unknown domain",
        )
        .await;
    assert_upstream_bounce(&bounce);

    // It keeps retrying (Prosody refuses it again and again), but the router
    // logs the state once, not once per retry.
    let refusal = format!("{NEW} does not match any configured external components");
    let t0 = Instant::now();
    while p.read_log().matches(&refusal).count() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the link did not retry:\n{}\n{}",
            d.logs(),
            p.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let attempts = p.read_log().matches(&refusal).count();
    assert_eq!(
        d.count_log(down_line(NEW)),
        1,
        "one line per state change, not per retry ({attempts} attempts):\n{}",
        d.logs()
    );
    eprintln!("{attempts} refused attempts in {:?}", t0.elapsed());

    // Prosody learns the domain; the link connects by itself.
    let t_restart = Instant::now();
    p.restart_with(&opts().component(NEW, NEW_SECRET))
        .unwrap_or_else(|e| panic!("Prosody restart failed: {e}"));
    d.expect_log_count(up_line(NEW), 1, RECOVERY);
    let link_up = t_restart.elapsed();
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    user_to_comp(&mut alice, NEW, &mut newc, "now you exist").await;
    comp_to_user(&mut newc, NEW, &mut alice, "indeed").await;
    eprintln!(
        "new.localhost: link up {link_up:?}, traffic flowing {:?} after Prosody's restart began",
        t_restart.elapsed()
    );
    assert!(t_restart.elapsed() < RECOVERY);
    assert_eq!(
        d.count_log(event("session.authenticated")),
        2,
        "{}",
        d.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_upstream_secret_is_reported_and_fixed_by_a_reload() {
    if !prosody::require() {
        return;
    }
    let p = start_prosody(&opts());
    let upstream = Some(p.component_addr());
    let d = Daemon::start(&router_config(
        upstream,
        &[(COMP, SECRET, "upstream_secret = \"wrong\"")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    d.expect_log_count(down_line(COMP).with("condition", "not-authorized"), 1, T);

    // The new upstream_secret applies at the next attempt; the component's
    // own session is untouched.
    d.reload(&router_config(
        upstream,
        &[(COMP, SECRET, "upstream_secret = \"s\"")],
    ));
    let t = d.expect_log_count(up_line(COMP), 1, RECOVERY);
    eprintln!("link up {t:?} after the reload");
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    user_to_comp(&mut alice, COMP, &mut comp, "fixed").await;
    assert_eq!(d.count_log(event("session.authenticated")), 1);
    assert_eq!(d.count_log(down_line(COMP)), 1, "{}", d.logs());
    assert!(
        !d.logs().contains("wrong"),
        "a secret appears in the log:\n{}",
        d.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_disconnect_takes_it_offline_in_prosody() {
    if !prosody::require() {
        return;
    }
    let p = start_prosody(&opts());
    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    d.expect_log_count(up_line(COMP), 1, T);
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    user_to_comp(&mut alice, COMP, &mut comp, "still there?").await;

    // The component goes away (TCP closed); its link is closed cleanly.
    drop(comp);
    d.expect_log_count(event("upstream.closed").domain(COMP), 1, T);
    user_gets_component_unavailable(&mut alice, COMP, "g1").await;
    assert!(
        p.read_log().contains("Received </stream:stream>"),
        "the link was not closed with </stream:stream>:\n{}",
        p.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_removing_the_component_closes_its_link_but_not_its_connection() {
    if !prosody::require() {
        return;
    }
    let p = start_prosody(&opts());
    let upstream = Some(p.component_addr());
    let d = Daemon::start(&router_config(
        upstream,
        &[(COMP, SECRET, ""), ("keep.localhost", "k", "")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    d.expect_log_count(up_line(COMP), 1, T);
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    user_to_comp(&mut alice, COMP, &mut comp, "before reload").await;

    d.reload(&router_config(upstream, &[("keep.localhost", "k", "")]));
    d.expect_log_count(event("upstream.closed").domain(COMP), 1, T);
    user_gets_component_unavailable(&mut alice, COMP, "r1").await;
    // Detached, not disconnected: what it sends is discarded, nothing comes back.
    comp.send(&format!(
        "<message from='{COMP}' to='{}'><body>into the void</body></message>",
        alice.jid
    ))
    .await;
    assert_comp_still_open(&mut comp, Duration::from_secs(1)).await;
    assert!(alice
        .recv_until(|s| is_body(s, "into the void"), Duration::from_millis(500))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_moves_and_removes_the_upstream() {
    if !prosody::require() {
        return;
    }
    let pa = start_prosody(&opts());
    let pb = start_prosody(
        &ProsodyOptions::new(HOST)
            .component(COMP, SECRET)
            .user("bob", "bobpw"),
    );
    let d = Daemon::start(&router_config(None, &[(COMP, SECRET, "")]));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    comp.send(&format!(
        "<message from='{COMP}' to='alice@localhost' id='n1'><body>x</body></message>"
    ))
    .await;
    let bounce = comp
        .expect_stanza(with_id("message", "n1"), T, "no bounce without upstream")
        .await;
    assert!(bounce.contains("<remote-server-not-found"), "{bounce}");

    // [upstream] appears: the live session gets its link.
    d.reload(&router_config(
        Some(pa.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    d.expect_log_count(up_line(COMP), 1, T);
    let mut alice = login_c2s(&pa, "alice", "alicepw").await;
    comp_to_user(&mut comp, COMP, &mut alice, "via A").await;

    // The address changes: the link moves to B now.
    d.reload(&router_config(
        Some(pb.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    d.expect_log_count(up_line(COMP), 2, T);
    let mut bob = login_c2s(&pb, "bob", "bobpw").await;
    comp_to_user(&mut comp, COMP, &mut bob, "via B").await;
    user_to_comp(&mut bob, COMP, &mut comp, "from B").await;
    user_gets_component_unavailable(&mut alice, COMP, "a1").await;

    // [upstream] disappears: the link is closed, the component stays.
    d.reload(&router_config(None, &[(COMP, SECRET, "")]));
    d.expect_log_count(event("upstream.closed").domain(COMP), 1, T);
    user_gets_component_unavailable(&mut bob, COMP, "b1").await;
    comp.send(&format!(
        "<message from='{COMP}' to='{}' id='n2'><body>x</body></message>",
        bob.jid
    ))
    .await;
    let bounce = comp
        .expect_stanza(
            with_id("message", "n2"),
            T,
            "no bounce after [upstream] was removed",
        )
        .await;
    assert!(bounce.contains("<remote-server-not-found"), "{bounce}");
    assert_eq!(d.count_log(event("session.authenticated")), 1);
}

/// A Prosody module that does what mod_privilege (XEP-0356) does on
/// `component-authenticated`: push a `<privilege/>` message to the component
/// at once (on the session, so it may share a TCP segment with `<handshake/>`),
/// then a presence routed through the server.
const PRIVILEGE_MODULE: &str = r#"
local st = require "util.stanza";
module:hook("component-authenticated", function(event)
	local session = event.session;
	session.send(st.message({ from = "localhost", to = module.host, id = "priv-1" })
		:tag("privilege", { xmlns = "urn:xmpp:privilege:2" })
			:tag("perm", { access = "roster", type = "both" }):up()
			:tag("perm", { access = "message", type = "outgoing" }):up());
	module:send(st.presence({ from = "alice@localhost/burst", to = module.host, id = "priv-2" }));
end);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_prosody_sends_right_after_authentication_reaches_the_component() {
    if !prosody::require() {
        return;
    }
    // The harness has no option for extra modules: rewrite its config
    // (global plugin path, module on the Component) and restart on it.
    let mut p = start_prosody(&opts());
    p.stop();
    let plugins = p.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("mod_xcr_test_privilege.lua"), PRIVILEGE_MODULE).unwrap();
    let cfg = std::fs::read_to_string(p.config_path()).unwrap();
    let section = format!("Component \"{COMP}\"\n");
    assert!(cfg.contains(&section), "unexpected harness config:\n{cfg}");
    let cfg = format!(
        "plugin_paths = {{ \"{}\" }}\n{}",
        plugins.display(),
        cfg.replace(
            &section,
            &format!("{section}\tmodules_enabled = {{ \"xcr_test_privilege\" }}\n")
        )
    );
    std::fs::write(p.config_path(), cfg).unwrap();
    p.restart()
        .unwrap_or_else(|e| panic!("Prosody restart failed: {e}"));

    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    let priv_msg = comp
        .recv_until(with_id("message", "priv-1"), T)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no <privilege/> message after authentication\n{}\n{}",
                d.logs(),
                p.log_tail()
            )
        });
    assert!(priv_msg.contains("urn:xmpp:privilege:2"), "{priv_msg}");
    assert!(priv_msg.contains("access='roster'") || priv_msg.contains("access=\"roster\""));
    assert_eq!(attr(&priv_msg, "from").as_deref(), Some(HOST));
    let presence = comp
        .expect_stanza(
            with_id("presence", "priv-2"),
            T,
            "no presence burst after authentication",
        )
        .await;
    assert_eq!(
        attr(&presence, "from").as_deref(),
        Some("alice@localhost/burst")
    );
    // (The log line may reach us after the stanzas did.)
    d.expect_log_count(up_line(COMP), 1, T);
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_link_is_detected_and_replaced() {
    if !prosody::require() {
        return;
    }
    const IDLE_MS: u64 = 1000;
    let p = start_prosody(&opts());
    let d = Daemon::start(&with_keepalive_interval(
        &router_config(Some(p.component_addr()), &[(COMP, SECRET, "")]),
        IDLE_MS,
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    d.expect_log_count(up_line(COMP), 1, T);

    // Idle for several ping intervals: the pings loop through Prosody and are
    // swallowed (the component sees nothing), and the link stays up.
    assert_comp_still_open(&mut comp, Duration::from_millis(4 * IDLE_MS)).await;
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());

    // A frozen server: TCP stays open, nothing answers.
    let pid = p.pid().expect("prosody pid") as i32;
    let _cont = ContOnDrop(pid);
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let detected = d.expect_log_count(down_line(COMP).with("kind", "dead-link"), 1, T);
    eprintln!("dead link detected {detected:?} after SIGSTOP (idle {IDLE_MS} ms)");
    assert!(
        detected < Duration::from_millis(4 * IDLE_MS),
        "{detected:?}"
    );
    comp.send(
        "<message from='comp.localhost' to='alice@localhost' id='z1'><body>frozen</body></message>",
    )
    .await;
    let bounce = comp
        .expect_stanza(
            with_id("message", "z1"),
            T,
            "no bounce while the link is dead",
        )
        .await;
    assert_upstream_bounce(&bounce);

    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    let t_cont = Instant::now();
    d.expect_log_count(up_line(COMP), 2, RECOVERY);
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    comp_to_user(&mut comp, COMP, &mut alice, "thawed").await;
    user_to_comp(&mut alice, COMP, &mut comp, "thawed too").await;
    eprintln!(
        "traffic flowing {:?} after SIGCONT ({:?} after SIGSTOP)",
        t_cont.elapsed(),
        t0.elapsed()
    );
    assert_eq!(d.count_log(event("session.authenticated")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_queued_for_a_link_that_dies_are_bounced() {
    if !prosody::require() {
        return;
    }
    // Long enough that the burst below is queued before the link is declared
    // dead (2.5 s to 7.5 s after the freeze), short enough for a test.
    const IDLE_MS: u64 = 5000;
    const N: usize = 110;
    let p = start_prosody(&opts());
    let d = Daemon::start(&with_keepalive_interval(
        &router_config(Some(p.component_addr()), &[(COMP, SECRET, "")]),
        IDLE_MS,
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    d.expect_log_count(up_line(COMP), 1, T);

    // Freeze Prosody, then send more than the kernel buffers and the link's
    // queue hold: the writer blocks, the queue fills, the rest is refused.
    let pid = p.pid().expect("prosody pid") as i32;
    let _cont = ContOnDrop(pid);
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let body = "x".repeat(60_000);
    for i in 0..N {
        comp.send(&format!(
            "<message from='{COMP}' to='alice@localhost' id='q{i}' type='chat'><body>{body}</body></message>"
        ))
        .await;
    }
    let sent = t0.elapsed();
    let detected = sent
        + d.expect_log_count(
            down_line(COMP).with("kind", "dead-link"),
            1,
            Duration::from_secs(15),
        );
    eprintln!(
        "burst of {N} × 60 kB sent in {sent:?}; dead link logged {detected:?} after the freeze"
    );

    // Every reply is a bounce for one of ours: resource-constraint (queue
    // full) at once, "Upstream server unavailable" for what was queued but
    // never written when the link died.
    let (mut unavailable, mut full) = (0, 0);
    while let Some(s) = comp.recv_until(|_| true, Duration::from_secs(2)).await {
        let id = attr(&s, "id").unwrap_or_default();
        assert!(id.starts_with('q'), "unexpected stanza {s}");
        assert_eq!(attr(&s, "type").as_deref(), Some("error"), "{s}");
        if s.contains("Upstream server unavailable") {
            assert_upstream_bounce(&s);
            unavailable += 1;
        } else {
            assert!(s.contains("<resource-constraint"), "{s}");
            full += 1;
        }
    }
    eprintln!("bounced: {unavailable} upstream-unavailable, {full} queue-full");
    assert!(
        sent < Duration::from_millis(2500),
        "the burst took {sent:?}: too slow to be sure it was queued while the link was up"
    );
    assert!(
        unavailable > 0,
        "nothing queued was bounced when the link died:\n{}",
        d.logs()
    );
    assert!(d.logs().contains("not sent upstream"), "{}", d.logs());
}

// ===========================================================================
// Limits and queue rules on the upstream link (README "Limits", "In front of
// Prosody").

/// Router config with top-level keys (limits) before the tables.
fn router_config_with(
    top: &str,
    upstream: Option<SocketAddr>,
    comps: &[(&str, &str, &str)],
) -> String {
    format!("{top}\n{}", router_config(upstream, comps))
}

/// Everything alice sent before this has been routed by Prosody once the
/// server answers a ping sent after it.
async fn barrier(user: &mut C2s) {
    let id = user.next_id();
    let res = user
        .iq(
            &format!("<iq type='get' id='{id}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>"),
            Duration::from_secs(60),
        )
        .await;
    assert!(res.is_some(), "no answer to the barrier ping");
}

/// `n` messages of `size` bytes of body from `user` to `to`, ids `{prefix}0`…;
/// returns once Prosody has routed them all.
async fn send_many(user: &mut C2s, to: &str, prefix: &str, n: usize, size: usize) {
    let filler = "m".repeat(size);
    for i in 0..n {
        user.send(&format!(
            "<message to='{to}' type='chat' id='{prefix}{i}'><body>{filler}</body></message>"
        ))
        .await;
    }
    barrier(user).await;
}

/// Prosody, the router in front of it with the config `config` makes for
/// Prosody's component address, the component logged in with its link up,
/// and alice logged in.
async fn gateway(
    popts: &ProsodyOptions,
    config: impl FnOnce(SocketAddr) -> String,
) -> (Prosody, Daemon, Comp, C2s) {
    let p = start_prosody(popts);
    let d = Daemon::start(&config(p.component_addr()));
    let comp = Comp::login(d.addr(), COMP, SECRET).await;
    d.expect_log_count(up_line(COMP), 1, T);
    let alice = login_c2s(&p, "alice", "alicepw").await;
    (p, d, comp, alice)
}

/// A stanza error's condition and type.
fn error_of(s: &str) -> (Option<String>, Option<String>) {
    let ty = s
        .find("<error type='")
        .map(|i| &s[i + 13..])
        .and_then(|r| r.split('\'').next())
        .map(str::to_string);
    (ty, stanza_error_condition(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jabber_client_stanzas_are_rewritten_exactly_and_reach_prosody() {
    if !prosody::require() {
        return;
    }
    let (p, d, mut comp, mut alice) =
        gateway(&opts(), |a| router_config(Some(a), &[(COMP, SECRET, "")])).await;
    let to = alice.jid.clone();
    let from = format!("bot@{COMP}");
    let variants = [
        // A `>` inside an attribute value before the declaration.
        format!("<message to='{to}' a='x>y' xmlns='jabber:client' from='{from}' type='chat'><body>gt</body></message>"),
        // Spaces around `=`.
        format!("<message from='{from}' to='{to}' type='chat' xmlns = 'jabber:client'><body>spaced</body></message>"),
        // A character reference in the value.
        format!("<message xmlns='jabber&#58;client' from='{from}' to='{to}' type='chat'><body>charref</body></message>"),
        // Double quotes.
        format!("<message xmlns=\"jabber:client\" from=\"{from}\" to=\"{to}\" type=\"chat\"><body>dquote</body></message>"),
        // An id that contains what a text search would take for the declaration.
        format!("<message id=\"a xmlns='jabber:client'\" from='{from}' to='{to}' type='chat' xmlns=\"jabber:client\"><body>lookalike</body></message>"),
    ];
    for (v, body) in variants
        .iter()
        .zip(["gt", "spaced", "charref", "dquote", "lookalike"])
    {
        comp.send(v).await;
        let got = alice
            .recv_until(|s| is_body(s, body), T)
            .await
            .unwrap_or_else(|| panic!("{v}\nnever reached {to}\n{}\n{}", d.logs(), p.log_tail()));
        assert_eq!(attr(&got, "from").as_deref(), Some(from.as_str()), "{got}");
        if body == "lookalike" {
            assert_eq!(
                attr(&got, "id").as_deref(),
                Some("a xmlns='jabber:client'"),
                "the id changed: {got}"
            );
        }
    }
    // In jabber:client only through a prefix: bounced, never forwarded.
    comp.send(&format!(
        "<c:message xmlns:c='jabber:client' from='{from}' to='{to}' id='pfx' type='chat'><c:body>prefixed</c:body></c:message>"
    ))
    .await;
    let bounce = comp
        .expect_stanza(
            with_id("message", "pfx"),
            T,
            "no bounce for the prefixed jabber:client stanza",
        )
        .await;
    assert_eq!(attr(&bounce, "type").as_deref(), Some("error"), "{bounce}");
    assert_eq!(
        error_of(&bounce),
        (Some("modify".into()), Some("bad-request".into())),
        "{bounce}"
    );
    assert!(alice
        .recv_until(|s| s.contains("prefixed"), Duration::from_millis(1000))
        .await
        .is_none());
    assert!(
        !p.warnings().contains("Unhandled"),
        "Prosody dropped something:\n{}",
        p.warnings()
    );
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_flooding_a_component_that_does_not_read_is_held_back_not_buffered() {
    if !prosody::require() {
        return;
    }
    const N: usize = 600;
    const BODY: usize = 64 * 1024;
    let (_p, d, mut comp, mut alice) = gateway(&opts(), |a| {
        router_config_with("max_queue_bytes = 1048576", Some(a), &[(COMP, SECRET, "")])
    })
    .await;
    let before = d.rss_kib();
    let peak = RssPeak::start(d.pid());
    let t0 = Instant::now();
    send_many(&mut alice, COMP, "f", N, BODY).await;
    // Prosody has routed all of it; give it time to push what it can.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = d.rss_kib();
    let peak = peak.finish();
    eprintln!(
        "Prosody flooding a component that does not read: {N} stanzas of {} KiB ({:.0} MB) sent in {:?}; router VmRSS before {:.1} MiB, while held {:.1} MiB, peak {:.1} MiB (+{:.1} MiB; bound: max_queue_bytes 1 MiB + the link's read buffer + the largest stanza)",
        BODY / 1024,
        (N * BODY) as f64 / 1e6,
        t0.elapsed(),
        mib(before),
        mib(held),
        mib(peak),
        mib(peak.saturating_sub(before))
    );
    assert!(
        peak.saturating_sub(before) < 12 * 1024,
        "the router buffered {:.1} MiB for a component that does not read",
        mib(peak - before)
    );
    // Now it reads: everything arrives, in order, intact; the link stayed up.
    for i in 0..N {
        let s = comp
            .recv_until(|s| element_name(s) == "message", T)
            .await
            .unwrap_or_else(|| panic!("stanza {i} of {N} never arrived\n{}", d.logs()));
        assert_eq!(attr(&s, "id"), Some(format!("f{i}")), "out of order");
        assert_eq!(text_of(&s, "body").map(|b| b.len()), Some(BODY));
    }
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_closes_the_old_link_first_and_bounces_what_the_old_session_could_not_write() {
    if !prosody::require() {
        return;
    }
    const N: usize = 300;
    // Prosody's own default: a second link for the domain is refused while
    // the first is up.
    let (_p, d, mut old, mut alice) = gateway(&opts().conflict_resolve("kick_new"), |a| {
        router_config_with("max_queue_bytes = 67108864", Some(a), &[(COMP, SECRET, "")])
    })
    .await;
    // The old session does not read: what does not fit in its socket
    // buffers waits in its queue.
    send_many(&mut alice, COMP, "q", N, 64 * 1024).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t0 = Instant::now();
    let mut new = Comp::login(d.addr(), COMP, SECRET).await;
    let up = d.expect_log_count(up_line(COMP), 2, T);
    eprintln!("new upstream link up {up:?} after the replacing session logged in");
    // What the old session could not write comes back to alice.
    let mut bounced = std::collections::BTreeSet::new();
    while let Some(s) = alice
        .recv_until(
            |s| attr(s, "type").as_deref() == Some("error"),
            Duration::from_secs(3),
        )
        .await
    {
        let id = attr(&s, "id").unwrap_or_default();
        assert!(id.starts_with('q'), "{s}");
        assert!(
            s.contains("Component connection closed before delivery"),
            "{s}"
        );
        bounced.insert(id);
    }
    // What it got before it was replaced is in its socket.
    let mut read = 0;
    loop {
        match old.recv_timeout(Duration::from_secs(2)).await {
            Got::Stanza(s) if attr(&s, "id").is_some_and(|i| i.starts_with('q')) => {
                assert!(
                    !bounced.contains(&attr(&s, "id").unwrap()),
                    "delivered and bounced"
                );
                read += 1;
            }
            Got::Stanza(_) => {}
            _ => break,
        }
    }
    eprintln!(
        "replaced while {N} stanzas were on their way to it: {read} reached the old session, {} bounced to the sender, {:?} after the replace",
        bounced.len(),
        t0.elapsed()
    );
    assert!(!bounced.is_empty(), "nothing was bounced\n{}", d.logs());
    assert_eq!(read + bounced.len(), N, "stanzas lost\n{}", d.logs());
    // The new link never met the old one at Prosody: no conflict.
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
    user_to_comp(&mut alice, COMP, &mut new, "to the new session").await;
    comp_to_user(&mut new, COMP, &mut alice, "from the new session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_component_gets_nothing_more_from_upstream_even_with_a_full_queue() {
    if !prosody::require() {
        return;
    }
    const N: usize = 250;
    let top = "max_queue_bytes = 1048576";
    let (p, d, mut comp, mut alice) = gateway(&opts(), |a| {
        router_config_with(
            top,
            Some(a),
            &[(COMP, SECRET, ""), ("keep.localhost", "k", "")],
        )
    })
    .await;
    let upstream = Some(p.component_addr());
    // More than its socket buffers and queue hold: the link waits for room.
    send_many(&mut alice, COMP, "d", N, 64 * 1024).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    d.reload(&router_config_with(
        top,
        upstream,
        &[("keep.localhost", "k", "")],
    ));
    let t0 = Instant::now();
    // The link closes although the component still does not read.
    let closed = event("upstream.closed").domain(COMP);
    let took = d
        .wait_log_count(&closed, 1, Duration::from_secs(12))
        .unwrap_or_else(|| {
            panic!(
                "the link of the detached component did not close while its queue was full:\n{}",
                d.logs()
            )
        });
    eprintln!("link of the detached component closed {took:?} after the reload");
    user_gets_component_unavailable(&mut alice, COMP, "gone1").await;
    // Detached, not disconnected: it reads what was queued before the
    // reload, in order, then nothing more, and its connection stays open.
    let mut got = 0;
    while let Got::Stanza(s) = comp.recv_timeout(Duration::from_secs(2)).await {
        assert_eq!(attr(&s, "id"), Some(format!("d{got}")), "{s}");
        got += 1;
    }
    eprintln!(
        "the detached component got {got} of {N} (queued before the reload), {:?} after it",
        t0.elapsed()
    );
    assert!(got < N, "everything was delivered to a detached component");
    assert_comp_still_open(&mut comp, Duration::from_millis(500)).await;
}

/// On the component's link: right after authentication, a `<message/>` in a
/// foreign namespace (from alice's session), then an ordinary one.
const FOREIGN_NS_MODULE: &str = r#"
local st = require "util.stanza";
module:hook("component-authenticated", function(event)
	local session = event.session;
	session.send(st.stanza("message", { xmlns = "urn:example:foreign", from = "alice@localhost/harness",
		to = module.host, id = "foreign-1", type = "chat" }):tag("body"):text("foreign"):up());
	session.send(st.message({ from = "alice@localhost/harness", to = module.host, id = "after-foreign",
		type = "chat" }):tag("body"):text("after"):up());
end);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_from_upstream_in_a_foreign_namespace_are_bounced_not_delivered() {
    if !prosody::require() {
        return;
    }
    let p = start_prosody(&opts().component_module("xcr_test_foreign", FOREIGN_NS_MODULE));
    // alice first: the module sends from her session's address.
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    assert_eq!(alice.jid, "alice@localhost/harness");
    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    let after = comp
        .recv_until(
            |s| {
                assert!(
                    !s.contains("foreign-1"),
                    "a stanza in a foreign namespace was delivered: {s}"
                );
                attr(s, "id").as_deref() == Some("after-foreign")
            },
            T,
        )
        .await
        .unwrap_or_else(|| {
            panic!(
                "nothing after the foreign stanza\n{}\n{}",
                d.logs(),
                p.log_tail()
            )
        });
    assert!(after.contains("after"), "{after}");
    let bounce = alice
        .expect_stanza(
            with_id("message", "foreign-1"),
            T,
            "the sender got no bounce",
        )
        .await;
    assert_eq!(attr(&bounce, "type").as_deref(), Some("error"), "{bounce}");
    assert_eq!(
        error_of(&bounce),
        (Some("modify".into()), Some("bad-request".into())),
        "{bounce}"
    );
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
}

/// Router config with `[upstream] max_stanza_size` set.
fn router_config_upstream_limit(upstream: SocketAddr, max: usize) -> String {
    format!(
        "log_level = \"info\"\n[upstream]\naddress = \"{upstream}\"\nmax_stanza_size = {max}\n[components.\"{COMP}\"]\nsecret = \"{SECRET}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_any_client_can_send_through_prosody_arrives_and_the_link_stays_up() {
    if !prosody::require() {
        return;
    }
    let (_p, d, mut comp, mut alice) =
        gateway(&opts(), |a| router_config(Some(a), &[(COMP, SECRET, "")])).await;

    // 200 KiB of apostrophes: legal for a client (under Prosody's 256 KiB
    // c2s limit), re-escaped by Prosody to six bytes each: over 1.2 MB on
    // the link, more than twice the component-facing max_stanza_size.
    let apos = "'".repeat(200 * 1024);
    alice
        .send(&format!(
            "<message to='{COMP}' type='chat' id='apos'><body>{apos}</body></message>"
        ))
        .await;
    let got = comp
        .recv_until(with_id("message", "apos"), T)
        .await
        .unwrap_or_else(|| panic!("the 200 KiB message never arrived\n{}", d.logs()));
    eprintln!(
        "200 KiB of apostrophes arrived as a {:.2} MB stanza",
        got.len() as f64 / 1e6
    );
    assert!(got.len() > 1_000_000, "{} bytes", got.len());
    assert_eq!(text_of(&got, "body").as_deref(), Some(apos.as_str()));

    // Nesting deeper than the component-facing max_stanza_depth (64).
    let depth = 200;
    let nested = format!(
        "{}{}",
        "<x xmlns='urn:example:deep'>".repeat(depth),
        "</x>".repeat(depth)
    );
    alice
        .send(&format!(
            "<message to='{COMP}' type='chat' id='deep'>{nested}</message>"
        ))
        .await;
    let got = comp
        .recv_until(with_id("message", "deep"), T)
        .await
        .unwrap_or_else(|| panic!("the deeply nested message never arrived\n{}", d.logs()));
    assert_eq!(got.matches("<x").count(), depth, "{got}");

    // An attribute value of 9,000 bytes (over the component-facing 8 KiB
    // token limit).
    let v = "v".repeat(9000);
    alice
        .send(&format!(
            "<message to='{COMP}' type='chat' id='attr'><x xmlns='urn:example:attr' v='{v}'/></message>"
        ))
        .await;
    let got = comp
        .recv_until(with_id("message", "attr"), T)
        .await
        .unwrap_or_else(|| {
            panic!(
                "the message with a 9,000-byte attribute never arrived\n{}",
                d.logs()
            )
        });
    assert!(got.contains(&v), "{got}");

    // And the link never went down.
    user_to_comp(&mut alice, COMP, &mut comp, "still up").await;
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
    assert_eq!(d.count_log(up_line(COMP)), 1, "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stanza_past_the_upstream_max_stanza_size_is_bounced_and_the_link_stays_up() {
    if !prosody::require() {
        return;
    }
    const MAX: usize = 100_000;
    let (_p, d, mut comp, mut alice) =
        gateway(&opts(), |a| router_config_upstream_limit(a, MAX)).await;
    let before = d.rss_kib();
    // 50 KiB of apostrophes: 300 KB on the link, three times the limit.
    alice
        .send(&format!(
            "<message to='{COMP}' type='chat' id='big'><body>{}</body></message>",
            "'".repeat(50 * 1024)
        ))
        .await;
    alice
        .send(&format!(
            "<message to='{COMP}' type='chat' id='small'><body>after</body></message>"
        ))
        .await;
    let bounce = alice
        .recv_until(with_id("message", "big"), T)
        .await
        .unwrap_or_else(|| panic!("no bounce for the oversized stanza\n{}", d.logs()));
    assert_eq!(attr(&bounce, "type").as_deref(), Some("error"), "{bounce}");
    assert_eq!(
        error_of(&bounce),
        (Some("modify".into()), Some("policy-violation".into())),
        "{bounce}"
    );
    assert_eq!(attr(&bounce, "from").as_deref(), Some(COMP), "{bounce}");
    // The component never sees it; what follows arrives on the same link.
    let got = comp
        .expect_stanza(
            |s| element_name(s) == "message",
            T,
            "the stanza after the oversized one never arrived",
        )
        .await;
    assert_eq!(attr(&got, "id").as_deref(), Some("small"), "{got}");
    user_to_comp(&mut alice, COMP, &mut comp, "still up").await;
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
    assert_eq!(d.count_log(up_line(COMP)), 1, "{}", d.logs());
    eprintln!(
        "oversized stanza skipped and bounced; VmRSS {:.1} MiB before, {:.1} MiB after",
        mib(before),
        mib(d.rss_kib())
    );
}

/// What a component sends at once after its handshake (its initial presence,
/// a first message) waits for its link's first attempt and reaches Prosody:
/// no "Upstream server unavailable" for being early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_stanzas_after_authentication_wait_for_the_link() {
    if !prosody::require() {
        return;
    }
    let p = start_prosody(&opts());
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, "")],
    ));
    for round in 0..3 {
        let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
        // In the same write as nothing else: right after `<handshake/>` came back.
        comp.send(&format!(
            "<message from='{COMP}' to='{}' id='early-{round}' type='chat'><body>early {round}</body></message>\
             <message from='{COMP}' to='{}' id='next-{round}' type='chat'><body>next {round}</body></message>",
            alice.jid, alice.jid
        ))
        .await;
        let first = alice
            .expect_stanza(
                |s| is_body(s, &format!("early {round}")),
                T,
                "the early message did not arrive",
            )
            .await;
        assert_eq!(attr(&first, "from").as_deref(), Some(COMP), "{first}");
        alice
            .expect_stanza(
                |s| is_body(s, &format!("next {round}")),
                T,
                "the next message did not arrive",
            )
            .await;
        // Nothing bounced to the component.
        assert_comp_still_open(&mut comp, Duration::from_millis(300)).await;
        drop(comp);
        d.expect_log_count(event("upstream.closed").domain(COMP), round + 1, T);
    }
}

/// The first stanzas wait at most 5 s: an upstream address that accepts TCP
/// and never answers bounces them after about 5 s, not at once and not only
/// when the connect attempt times out; once the link has failed, the next
/// stanza bounces at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_stanzas_bounce_after_five_seconds_without_a_link() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    // The kernel accepts; nobody ever writes: the server header never comes.
    let d = Daemon::start(&router_config(Some(addr), &[(COMP, SECRET, "")]));
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    let sent = std::time::Instant::now();
    comp.send(&format!(
        "<message from='{COMP}' to='someone@elsewhere.example' id='w1'><body>waits</body></message>"
    ))
    .await;
    let b = comp
        .expect_stanza(
            with_id("message", "w1"),
            Duration::from_secs(15),
            "no bounce after the wait",
        )
        .await;
    let waited = sent.elapsed();
    assert_upstream_bounce(&b);
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(9),
        "bounced after {waited:?}, expected about 5 s\n{}",
        d.logs()
    );
    comp.send(&format!(
        "<message from='{COMP}' to='someone@elsewhere.example' id='w2'><body>now</body></message>"
    ))
    .await;
    let sent = std::time::Instant::now();
    let b = comp
        .expect_stanza(
            with_id("message", "w2"),
            T,
            "no bounce once the link had failed",
        )
        .await;
    assert_upstream_bounce(&b);
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    drop(silent);
}

/// Sends, over the component's link right after its authentication, a message
/// addressed to another domain (as ejabberd's `global_routes` does), then one
/// to the component itself.
const CROSS_MODULE: &str = r#"
local st = require "util.stanza";
module:hook("component-authenticated", function(event)
	local session = event.session;
	session.send(st.message({ from = "alice@localhost/harness", to = "other.localhost",
		id = "cross-1", type = "chat" }):tag("body"):text("for other"):up());
	session.send(st.message({ from = "alice@localhost/harness", to = module.host,
		id = "own-1", type = "chat" }):tag("body"):text("for comp"):up());
end);
"#;

/// A stanza arriving on one domain's link for another domain the router
/// serves goes to that domain's component, never to the link's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_on_a_link_are_routed_by_their_to() {
    if !prosody::require() {
        return;
    }
    const OTHER: &str = "other.localhost";
    let p = start_prosody(&opts().component_module("xcr_test_cross", CROSS_MODULE));
    let d = Daemon::start(&router_config(
        Some(p.component_addr()),
        &[(COMP, SECRET, ""), (OTHER, "o", "")],
    ));
    let mut other = Comp::login(d.addr(), OTHER, "o").await;
    let mut comp = Comp::login(d.addr(), COMP, SECRET).await;
    let own = comp
        .recv_until(
            |s| {
                assert!(
                    !s.contains("cross-1"),
                    "the link's own component got another domain's stanza: {s}"
                );
                attr(s, "id").as_deref() == Some("own-1")
            },
            T,
        )
        .await
        .unwrap_or_else(|| panic!("own-1 did not arrive\n{}\n{}", d.logs(), p.log_tail()));
    assert!(own.contains("for comp"), "{own}");
    let cross = other
        .expect_stanza(
            with_id("message", "cross-1"),
            T,
            "the other domain's component did not get its stanza",
        )
        .await;
    assert_eq!(attr(&cross, "to").as_deref(), Some(OTHER), "{cross}");
    assert!(cross.contains("for other"), "{cross}");
    assert_eq!(d.count_log(down_line(COMP)), 0, "{}", d.logs());
}

/// The delays the log announced, in order ("retrying in N s").
fn announced_delays(logs: &str) -> Vec<f64> {
    logs.lines()
        .filter_map(|l| l.split("retrying in ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

/// Every retry is logged at the default level with its delay, and a SIGHUP
/// makes a link that is down try at once instead of waiting out its backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_retries_a_down_link_at_once() {
    if !prosody::require() {
        return;
    }
    let (mut p, d, mut comp, _) =
        gateway(&opts(), |a| router_config(Some(a), &[(COMP, SECRET, "")])).await;
    p.stop();
    // Wait until the backoff has grown to at least 5 s (1, 2, 4, 8 s ± 25 %).
    let deadline = Instant::now() + Duration::from_secs(30);
    while announced_delays(&d.logs()).last().is_none_or(|&s| s < 5.0) {
        assert!(
            Instant::now() < deadline,
            "the backoff did not grow:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let delays = announced_delays(&d.logs());
    assert!(
        delays.len() >= 3,
        "retries are not all logged: {delays:?}\n{}",
        d.logs()
    );
    // One line per failed attempt: a warning when the reason changes (the
    // dropped link, then refused connects), info for the same reason again.
    let (down, still) = (
        d.count_log(down_line(COMP)),
        d.count_log(event("upstream.still_down").domain(COMP)),
    );
    assert!(
        down + still >= 3 && still >= 1,
        "{down} down, {still} still down\n{}",
        d.logs()
    );
    p.restart()
        .unwrap_or_else(|e| panic!("Prosody restart failed: {e}"));
    let t = Instant::now();
    d.sighup();
    let up = d.expect_log_count(up_line(COMP), 2, T);
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_millis(2500),
        "the link came up {waited:?} after the SIGHUP ({up:?}); its backoff was {:?} s\n{}",
        delays.last(),
        d.logs()
    );
    assert_eq!(d.count_log(event("upstream.retry_now")), 1, "{}", d.logs());
    assert!(
        d.count_log(event("reload.retry_links")) == 1,
        "{}",
        d.logs()
    );
    let mut alice = login_c2s(&p, "alice", "alicepw").await;
    comp_to_user(&mut comp, COMP, &mut alice, "after the SIGHUP").await;
}
