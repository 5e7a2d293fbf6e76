//! Ferry over an emulated long, lossy link: the short form of the WAN
//! benchmark's scenario B (100 Mbit/s, 100 ms, 1 % loss, a 1000-packet
//! queue), so that a regression of the congestion controller fails CI.
//! `tests/bench/wan` runs the whole comparison.

use ferry_tests::netns::can_run;
use ferry_tests::wan::{Shape, Wan};
use ferry_tests::{blake3_file, heavy_io, write_random};

const MIB: u64 = 1 << 20;

#[test]
#[ignore = "needs root and network namespaces; tests/run runs it"]
fn fair_keeps_a_lossy_long_link_full() {
    assert!(can_run(), "needs root and network namespaces");
    let _serial = heavy_io();
    let mut wan = Wan::start(Shape {
        mbit: 100,
        rtt_ms: 100,
        loss: 0.01,
        queue: 1000,
    });
    // The admin's target is the office link; the policy is the default.
    let (app, client) = wan.appliance("[transfer]\ntarget_rate = \"100M\"\n");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("dailies.mov");
    write_random(&file, 240 * MIB, 5);

    wan.report();
    let run = client.run(&["put", file.to_str().unwrap(), "share=media/wan/", "--json"]);
    let link = wan.report();
    let r = run.json();

    let landed = app.share.join("wan/dailies.mov");
    assert_eq!(
        blake3_file(&landed),
        blake3_file(&file),
        "the file arrived intact"
    );
    let seconds = r["seconds"].as_f64().unwrap();
    let mbit = (240 * MIB) as f64 * 8.0 / seconds / 1e6;
    let f = link.forward;
    let lost = f.lost as f64 / f.packets_in as f64;
    eprintln!(
        "{mbit:.1} Mbit/s over 100 Mbit/s at 1 % loss: {} packets, {:.2} % lost at random, {} dropped at the queue, \
         {:.2} % of bytes sent again",
        f.packets_in,
        lost * 100.0,
        f.dropped,
        r["bytes_lost"].as_f64().unwrap() * 100.0 / r["udp_bytes_sent"].as_f64().unwrap()
    );
    // The link did lose packets, so the rate below was earned.
    assert!(lost > 0.007, "the emulator lost only {:.3} %", lost * 100.0);
    assert!(
        mbit >= 80.0,
        "{mbit:.1} Mbit/s is under 80 % of the 100 Mbit/s link"
    );
}
