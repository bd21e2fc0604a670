//! The longer help texts: examples and exit statuses after each command's `--help`, and
//! the list of `--fail-on` metrics.

use crate::threshold::METRICS;

pub(super) const AFTER_BROKER_HELP: &str = "\
Examples:
  loadtest broker                          # amqp://guest:guest@127.0.0.1:PORT/%2f
  loadtest broker --keep-data broker-data  # durable queues survive a stop and a new start

On stderr a line `rabbitmqctl: HOME=... ERL_EPMD_PORT=... /usr/lib/rabbitmq/bin/rabbitmqctl
-n NODE list_queues` is the command (without its label) that reaches this broker;
Debian's /usr/sbin/rabbitmqctl cannot (it switches to the rabbitmq user and its cookie).

Needs rabbitmq-server (scripts/test as root installs it). Ctrl-C, SIGTERM or SIGHUP stop
the broker cleanly (SIGKILL after 15 s) together with its epmd and, unless --keep-data
was given, its data directory. Exit status: 0 stopped on request, 1 it could not start or
died by itself, 2 bad usage.";

pub(super) const AFTER_COMPARE_HELP: &str = "\
Examples:
  loadtest compare --profile blog --spawn-server --cpus 1 --memory 2G --out cmp
  loadtest compare --transports --profile blog --spawn-server --cpus 1 --memory 2G --out styles
  loadtest compare --transports --profile rate --rate 20 --duration 5 --spawn-server \\
      --drain-timeout 30 --out quick-styles -- --alloc-chars 1000 --delay-ms 5

With --transports the messaging runs start a private broker each (or use --amqp-url); the
arguments after `--` go to both purchasing-api and purchasing-worker, so give only the
workload flags they share (--alloc-chars, --delay-ms, --durable, ...). Writes
comparison.json, comparison.html and one directory per configuration.";

pub(super) const AFTER_RUN_HELP: &str = "\
Examples:
  loadtest run --profile blog --spawn-server --cpus 1 --memory 2G --out blog-run
  loadtest run --profile step --users 5 --step-users 5 --step-seconds 2 --max-users 20 \\
      --duration 10 --spawn-server --out quick -- --alloc-chars 1000 --delay-ms 5
  loadtest run --profile rate --rate 5 --duration 60 --spike-rate 50 --spike-start 20 \\
      --spike-seconds 10 --url http://VM:8080
  loadtest run ... --fail-on 'lost>0' --fail-on 'p99>2000'

The messaging half (a private broker outside the VM, the worker inside it):
  loadtest run --transport amqp --spawn-broker --spawn-server --delivery reliable \\
      --profile blog --cpus 1 --memory 2G --out blog-amqp
  loadtest run --transport amqp --spawn-broker --spawn-server --profile rate --rate 20 \\
      --duration 5 --drain-timeout 30 --out quick-amqp -- --alloc-chars 1000 --delay-ms 5
  loadtest run --transport amqp --spawn-broker --spawn-server --delivery reliable ... \\
      --kill-worker-every 2 --restart-broker-at 3      # faults: nothing confirmed is lost
  loadtest run --transport amqp --amqp-url amqp://guest:guest@HOST:5672/%2f \\
      --orders-file /mnt/vm/PurchaseOrders.txt ...      # your broker and your worker

Exit status: 0 the run completed (even if the server failed), 99 a --fail-on threshold
failed, 1 the run could not be done, 2 bad usage.";

pub(super) fn fail_on_help() -> String {
    let mut text = String::from(
        "Exit 99 if this condition holds after the run, e.g. 'lost>0', 'p99>2000'; repeatable. \
         Operators: > >= < <= == !=. A metric that could not be measured fails the check.\n\nMetrics:",
    );
    for (name, meaning) in METRICS {
        text.push_str(&format!("\n  {name:<24} {meaning}"));
    }
    text
}
