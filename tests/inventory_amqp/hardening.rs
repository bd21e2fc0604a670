//! What the AMQP client must refuse or say plainly, against the real broker: codes the
//! purchasing side would refuse (nothing published), a broker that turns the login or the
//! virtual host down (named as a refusal, not as "not reachable"), a queue someone else
//! declared with another argument (the argument named), a broker password that never
//! appears in either binary's output, and Ctrl-C in the middle of a long request.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::types::AMQPValue;
use loadtest::broker::require_installed_or_skip;

use crate::broker::{Shared, run};
use crate::raw::{DEAD_LETTER_QUEUE, QUEUE, declare, depth, get, quorum_arguments};
use crate::{common, inventory};

/// Codes the item-code rule refuses: leading space, a line break (it would forge a second
/// order line), and one character over the 100-character limit.
fn refused_codes() -> [String; 3] {
    [" LEAD".to_owned(), "NL\nFORGED".to_owned(), "X".repeat(101)]
}

#[test]
fn codes_the_purchasing_side_would_refuse_are_refused_before_publishing() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    for delivery in ["faithful", "reliable"] {
        let [lead, forged, long] = refused_codes();
        let args = [
            "request",
            "--amqp-url",
            &shared.url,
            "--delivery",
            delivery,
            &lead,
            &forged,
            &long,
            "GOOD",
        ];
        let out = inventory(&args);
        assert_eq!(
            out.code,
            Some(1),
            "{delivery}: {}{}",
            out.stdout,
            out.stderr
        );
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            4,
            "one line per code, none broken: {}",
            out.stdout
        );
        for line in &lines[..3] {
            assert!(line.starts_with("failed  "), "{line}");
            assert!(line.contains("refused before publishing"), "{line}");
            assert!(line.contains("nothing was published"), "{line}");
        }
        assert!(lines[1].contains(r"NL\nFORGED"), "{}", lines[1]);
        assert!(lines[3].starts_with("ok      GOOD"), "{}", lines[3]);
        // Not "the broker is not reachable": the broker was never the problem.
        assert!(!out.stderr.contains("not reachable"), "{}", out.stderr);
        run(async {
            // A faithful publish is not confirmed: the command may exit before the broker's
            // queue has counted it, so wait (bounded) for it to arrive, then check it is alone.
            let arrived = Instant::now() + Duration::from_secs(5);
            while depth(&shared.url, QUEUE).await == 0 && Instant::now() < arrived {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(depth(&shared.url, QUEUE).await, 1, "{delivery}: only GOOD");
            let (connection, channel) = crate::raw::raw(&shared.url).await;
            let message = get(&channel, QUEUE).await;
            assert_eq!(message.delivery.data, b"GOOD");
            message.delivery.ack(Default::default()).await.expect("ack");
            let _ = connection.close(200, "test".into()).await;
            crate::raw::delete_queues(&shared.url).await;
        });
    }
}

#[test]
fn a_login_or_vhost_the_broker_refuses_is_named_as_a_refusal_not_as_unreachable() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    let port = shared
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    for (url, says) in [
        (
            format!("amqp://guest:wrong-s3cret@127.0.0.1:{port}/%2f"),
            "ACCESS_REFUSED",
        ),
        (
            format!("amqp://guest:guest@127.0.0.1:{port}/no-such-vhost"),
            "vhost",
        ),
    ] {
        let out = inventory(&["request", "--amqp-url", &url, "--delivery", "reliable", "A"]);
        assert_eq!(out.code, Some(1), "{url}: {}{}", out.stdout, out.stderr);
        let line = out.stdout.lines().next().unwrap_or_default();
        assert!(line.contains("refused the connection"), "{line}");
        assert!(line.contains(says), "{url}: {line}");
        assert!(!out.stderr.contains("not reachable"), "{}", out.stderr);
        assert!(!format!("{}{}", out.stdout, out.stderr).contains("s3cret"));
    }
}

#[test]
fn a_queue_declared_with_another_argument_is_refused_naming_that_argument() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    run(async {
        // Someone else's queue: a quorum queue with a length limit of its own.
        let mut arguments = quorum_arguments();
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
        declare(&shared.url, DEAD_LETTER_QUEUE, true, quorum_arguments())
            .await
            .expect("declare the dead-letter queue");
        declare(&shared.url, QUEUE, true, arguments)
            .await
            .expect("declare a queue with x-max-length");
    });
    let out = inventory(&[
        "request",
        "--amqp-url",
        &shared.url,
        "--delivery",
        "reliable",
        "A",
    ]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let line = out.stdout.lines().next().unwrap_or_default();
    // RabbitMQ names the first argument it finds different; the line names that one and
    // does not blame durability.
    let named = line
        .split("inequivalent arg '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("the broker names an argument: {line}"));
    assert!(named.starts_with("x-"), "{line}");
    assert!(line.contains(&format!("and its {named} differs")), "{line}");
    assert!(!line.contains("durab"), "{line}");
    run(async {
        assert_eq!(depth(&shared.url, QUEUE).await, 0, "nothing was published");
        crate::raw::delete_queues(&shared.url).await;
    });
}

/// URLs each wrong in a way clap or the URL parser refuses, every one with the password
/// `s3cret` in it.
const BAD_URLS: [&str; 6] = [
    "amqp://guest:s3cret@127.0.0.1:99999/%2f",
    "amqp://guest:s3cret@127.0.0.1:5672/%2f?heartbeat=often",
    "amqp://guest:pa/s3cret@127.0.0.1:5672/%2f",
    "amqp://guest:pa#s3cret@127.0.0.1:5672/%2f",
    "amqp://guest:pa?s3cret@127.0.0.1:5672/%2f",
    "amqps://guest:s3cret@127.0.0.1/%2f",
];

#[test]
fn no_output_of_either_binary_contains_the_broker_password() {
    // No broker needed: every URL is refused before anything connects.
    let worker = common::bin_path("purchasing-worker");
    let client = common::bin_path("inventory");
    for url in BAD_URLS {
        let runs = [
            (&client, vec!["request", "--amqp-url", url, "A"], None),
            (
                &client,
                vec!["request", "A"],
                Some(inventory::PURCHASING_AMQP_URL),
            ),
            (&worker, vec!["--amqp-url", url], None),
            (&worker, vec![], Some(inventory::PURCHASING_AMQP_URL)),
        ];
        for (program, args, env) in runs {
            let mut command = Command::new(program);
            command
                .args(&args)
                .env_remove(inventory::PURCHASING_AMQP_URL)
                .env_remove(inventory::PURCHASING_API_URL)
                .stdin(Stdio::null());
            if let Some(name) = env {
                command.env(name, url);
            }
            let output = command.output().expect("run the binary");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(
                output.status.code(),
                Some(2),
                "{program:?} {args:?} {url}: {said}"
            );
            assert!(said.contains("--amqp-url"), "{program:?} {url}: {said}");
            assert!(
                !said.contains("s3cret"),
                "{program:?} {args:?} {url}: {said}"
            );
        }
    }
}

#[test]
fn ctrl_c_during_a_long_request_names_the_code_in_flight_and_every_ok_is_queued() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    let codes: Vec<String> = (0..5_000).map(|i| format!("C{i}")).collect();
    let mut child = Command::new(common::bin_path("inventory"))
        .args([
            "request",
            "--amqp-url",
            &shared.url,
            "--delivery",
            "reliable",
        ])
        .args(&codes)
        .env_remove(inventory::PURCHASING_AMQP_URL)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start inventory");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    // Past the first few confirms, the handler for Ctrl-C is in place and codes are moving.
    while lines.len() < 20 {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "inventory ended early"
        );
        lines.push(line.trim_end().to_owned());
    }
    // SAFETY: a plain syscall on our own child's PID, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let begun = Instant::now();
    lines.extend(stdout.lines().map(|l| l.unwrap()));
    let status = child.wait().expect("wait for inventory");
    assert!(
        begun.elapsed() < Duration::from_secs(10),
        "{:?}",
        begun.elapsed()
    );
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");

    let ok = lines.iter().filter(|l| l.starts_with("ok ")).count();
    let last = lines.last().unwrap();
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("ok ")),
        "{lines:?}"
    );
    assert!(ok < codes.len(), "Ctrl-C came before the end");
    // The code after the last ok is the one named, with what may have happened to it.
    let expected = format!("interrupted  {}  (request id ", codes[ok]);
    assert!(last.starts_with(&expected), "{last}");
    assert!(last.contains("may or may not be queued"), "{last}");
    assert!(stderr.contains("codes not sent"), "{stderr}");
    // Every ok is queued; the one in flight may be too.
    let queued = run(depth(&shared.url, QUEUE)) as usize;
    assert!(queued == ok || queued == ok + 1, "queued {queued}, ok {ok}");
    run(crate::raw::delete_queues(&shared.url));
}
