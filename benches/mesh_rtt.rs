//! Cross-core round trip through the shard mesh (SPSC queue there, SPSC queue back), timed
//! with a plain main, glommio-style: `cargo bench --bench mesh_rtt`.

use std::time::Instant;

use shardis::runtime::mesh::spsc;

fn main() {
    let (mut to_b, mut at_b) = spsc::<u64>(1024);
    let (mut to_a, mut at_a) = spsc::<u64>(1024);
    let n: u64 = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let echo = std::thread::spawn(move || {
        for _ in 0..n {
            let v = loop {
                if let Some(v) = at_b.pop() {
                    break v;
                }
                std::hint::spin_loop();
            };
            while to_a.push(v).is_err() {
                std::hint::spin_loop();
            }
        }
    });
    let start = Instant::now();
    for i in 0..n {
        while to_b.push(i).is_err() {
            std::hint::spin_loop();
        }
        loop {
            if let Some(v) = at_a.pop() {
                assert_eq!(v, i);
                break;
            }
            std::hint::spin_loop();
        }
    }
    let el = start.elapsed();
    let _ = echo.join();
    println!(
        "mesh round trip (spinning both sides): {:.0} ns over {n} trips",
        el.as_nanos() as f64 / n as f64
    );
}
