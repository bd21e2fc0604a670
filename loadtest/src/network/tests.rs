use super::*;

#[test]
fn ranges_parse_and_hand_out_addresses_from_two() {
    let cidr: Cidr = "10.200.0.0/24".parse().unwrap();
    assert_eq!(cidr.to_string(), "10.200.0.0/24");
    assert_eq!(cidr.capacity(), 253);
    assert_eq!(cidr.host(0), Some("10.200.0.2".parse().unwrap()));
    assert_eq!(cidr.host(252), Some("10.200.0.254".parse().unwrap()));
    assert_eq!(cidr.host(253), None);
    let small: Cidr = "192.168.7.8/29".parse().unwrap();
    assert_eq!(small.capacity(), 5);
    assert_eq!(small.host(4), Some("192.168.7.14".parse().unwrap()));
}

#[test]
fn bad_ranges_are_refused_with_the_reason() {
    for (text, why) in [
        ("10.200.0.0", "ADDRESS/PREFIX"),
        (
            "10.200.0.1/24",
            "host bits set; the range starts at 10.200.0.0/24",
        ),
        ("10.0.0.0/30", "from /8 to /29"),
        ("nope/24", "not an IPv4 range"),
        ("::1/64", "not an IPv4 range"),
    ] {
        let err = text.parse::<Cidr>().unwrap_err();
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn link_rates_parse_as_tc_writes_them() {
    for (text, bits, shown) in [
        ("100mbit", 100_000_000, "100mbit"),
        ("10Mbit", 10_000_000, "10mbit"),
        ("1.5mbit", 1_500_000, "1500kbit"),
        ("512kbit", 512_000, "512kbit"),
        ("1gbit", 1_000_000_000, "1gbit"),
    ] {
        let rate: LinkRate = text.parse().unwrap();
        assert_eq!(rate.bits_per_s(), bits, "{text}");
        assert_eq!(rate.to_string(), shown);
    }
    assert!(
        "10mb"
            .parse::<LinkRate>()
            .unwrap_err()
            .contains("e.g. 100mbit")
    );
    assert!(
        "1kbit"
            .parse::<LinkRate>()
            .unwrap_err()
            .contains("too thin")
    );
    // tbf's bucket: 10 ms of the rate, at least four full frames.
    assert_eq!(
        "100mbit".parse::<LinkRate>().unwrap().burst_bytes(),
        125_000
    );
    assert_eq!("1mbit".parse::<LinkRate>().unwrap().burst_bytes(), 4 * 1514);
}
