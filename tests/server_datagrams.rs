//! Property test: arbitrary datagram sequences (raw, mutated, replayed, truncated, from other
//! addresses, mixed with renegotiations, restarts and kills) never panic `ServerCore`, with a
//! genuine client running alongside. The same driver backs `fuzz/fuzz_targets/server_datagrams.rs`.

#[path = "common/pair.rs"]
mod pair;
#[path = "common/server_ops.rs"]
mod server_ops;

use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    // 48 cases keep CI quick; PROPTEST_CASES=N overrides for a longer local hunt.
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { 48 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn server_survives_arbitrary_datagram_sequences(program in vec(any::<u8>(), 0..600)) {
        server_ops::run(&program);
    }

    /// Programs made only of "mutate a genuine client datagram" and "let traffic flow" ops,
    /// which reach deeper into established sessions than uniform bytes do.
    #[test]
    fn server_survives_mutated_genuine_traffic(
        wrap in 0u8..3,
        ops in vec((0u8..2, any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()), 0..80),
    ) {
        let mut program = vec![wrap];
        for (kind, a, b, c, d) in ops {
            if kind == 0 {
                program.push(0);
            } else {
                program.extend_from_slice(&[3, a, b, c, d]);
            }
        }
        server_ops::run(&program);
    }
}

#[test]
fn fixed_programs() {
    // Empty, all-zero, handshake then every op once.
    server_ops::run(&[]);
    server_ops::run(&[0; 64]);
    for wrap in 0..3u8 {
        let mut prog = vec![wrap, 0, 1, 40, 0];
        for op in 2..10u8 {
            prog.extend_from_slice(&[op, 1, 2, 3, 4, 5, 0, 1, 200, 0]);
        }
        server_ops::run(&prog);
    }
}
