//! A careless foreign publisher: AMQP 0-9-1 frames written by hand, so a test can publish
//! what no well-behaved client library lets one build — a `message_id` that is not UTF-8,
//! which RabbitMQ accepts and confirms, and which lapin cannot parse. (pika sends the same
//! with `BasicProperties(message_id=b'\xff')`.) Enough of the protocol for one
//! confirmed publish: the handshake with PLAIN login, a channel, confirm mode, publish
//! with a content header and a body, the broker's ack, close.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use wire_contract::amqp::{PERSISTENT, QUEUE};

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
const BASIC: u16 = 60;

/// Publishes `body` to the queue, persistent, with these raw bytes as its `message_id`,
/// and waits for the broker's confirm. `port` is the broker's AMQP port on 127.0.0.1
/// (user guest, virtual host `/`).
pub fn publish_with_raw_message_id(port: u16, message_id: &[u8], body: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    expect_method(&mut stream, (10, 10)); // connection.start
    let mut start_ok = method(10, 11);
    start_ok.extend(0u32.to_be_bytes()); // client properties: an empty table
    short_string(&mut start_ok, b"PLAIN");
    long_string(&mut start_ok, b"\0guest\0guest");
    short_string(&mut start_ok, b"en_US");
    send(&mut stream, FRAME_METHOD, 0, &start_ok);
    let tune = expect_method(&mut stream, (10, 30));
    let mut tune_ok = method(10, 31);
    tune_ok.extend(&tune[4..6]); // channel-max as offered
    tune_ok.extend(131_072u32.to_be_bytes()); // frame-max
    tune_ok.extend(0u16.to_be_bytes()); // no heartbeats
    send(&mut stream, FRAME_METHOD, 0, &tune_ok);
    let mut open = method(10, 40);
    short_string(&mut open, b"/");
    short_string(&mut open, b"");
    open.push(0);
    send(&mut stream, FRAME_METHOD, 0, &open);
    expect_method(&mut stream, (10, 41));
    let mut channel_open = method(20, 10);
    short_string(&mut channel_open, b"");
    send(&mut stream, FRAME_METHOD, 1, &channel_open);
    expect_method(&mut stream, (20, 11));
    let mut select = method(85, 10);
    select.push(0);
    send(&mut stream, FRAME_METHOD, 1, &select);
    expect_method(&mut stream, (85, 11));

    let mut publish = method(BASIC, 40);
    publish.extend(0u16.to_be_bytes());
    short_string(&mut publish, b""); // the default exchange
    short_string(&mut publish, QUEUE.as_bytes());
    publish.push(0);
    send(&mut stream, FRAME_METHOD, 1, &publish);
    let mut header = Vec::new();
    header.extend(BASIC.to_be_bytes());
    header.extend(0u16.to_be_bytes()); // weight
    header.extend((body.len() as u64).to_be_bytes());
    // Property flags: delivery-mode (bit 12) and message-id (bit 7), listed in that order.
    header.extend((1u16 << 12 | 1u16 << 7).to_be_bytes());
    header.push(PERSISTENT);
    short_string(&mut header, message_id);
    send(&mut stream, FRAME_HEADER, 1, &header);
    send(&mut stream, FRAME_BODY, 1, body);
    expect_method(&mut stream, (BASIC, 80)); // basic.ack: confirmed

    let mut close = method(10, 50);
    close.extend(200u16.to_be_bytes());
    short_string(&mut close, b"bye");
    close.extend([0, 0, 0, 0]);
    send(&mut stream, FRAME_METHOD, 0, &close);
    expect_method(&mut stream, (10, 51));
}

fn method(class: u16, method: u16) -> Vec<u8> {
    let mut payload = class.to_be_bytes().to_vec();
    payload.extend(method.to_be_bytes());
    payload
}

fn short_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).expect("a short string"));
    out.extend(bytes);
}

fn long_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend((bytes.len() as u32).to_be_bytes());
    out.extend(bytes);
}

fn send(stream: &mut TcpStream, kind: u8, channel: u16, payload: &[u8]) {
    let mut frame = vec![kind];
    frame.extend(channel.to_be_bytes());
    frame.extend((payload.len() as u32).to_be_bytes());
    frame.extend(payload);
    frame.push(FRAME_END);
    stream.write_all(&frame).expect("write a frame");
}

/// Reads frames until a method frame arrives; panics unless it is `expected`. Returns its
/// payload.
fn expect_method(stream: &mut TcpStream, expected: (u16, u16)) -> Vec<u8> {
    loop {
        let mut head = [0u8; 7];
        stream
            .read_exact(&mut head)
            .expect("a frame from the broker");
        let size = u32::from_be_bytes(head[3..7].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; size + 1];
        stream
            .read_exact(&mut payload)
            .expect("the frame's payload");
        payload.pop();
        if head[0] != FRAME_METHOD {
            continue;
        }
        let class = u16::from_be_bytes([payload[0], payload[1]]);
        let id = u16::from_be_bytes([payload[2], payload[3]]);
        assert_eq!(
            (class, id),
            expected,
            "unexpected method from the broker: {:?}",
            String::from_utf8_lossy(&payload)
        );
        return payload;
    }
}
