//! `just bench`: throughput numbers against real services.
//! `--quick` is the CI smoke mode (small sizes, same code paths).

use wasync_tests::amqp::bench_outbox_relay;

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");

    // Outbox relay -> RabbitMQ, publisher confirms on, pipelined windows.
    // For contrast, a window of 1 is awaiting each confirm before the next
    // publish (one broker fsync per event).
    let (events, unpipelined) = if quick { (500, 50) } else { (20_000, 500) };
    let runs = [
        (unpipelined, 256, 1),
        (events, 256, 256),
        (events, 1024, 1024),
    ];
    for (n, batch, window) in runs {
        let r = bench_outbox_relay(n, batch, window).await;
        println!("{r}");
    }
}
