//! Fuzzes data-channel packet handling: header parsing and open-in-place with every cipher
//! must reject arbitrary bytes without panicking and without moving the replay window.
#![no_main]

use fwd::proto::data::{data_keys, parse_data_header, Cipher, KeyBlock, ReplayWindow, Side};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_data_header(data);
    let mut block = [0u8; 256];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(1);
    }
    let block = KeyBlock::new(block);
    for cipher in Cipher::ALL {
        let Ok((_, rx)) = data_keys(cipher, &block, Side::Server) else { return };
        let mut window = ReplayWindow::default();
        let mut pkt = data.to_vec();
        if rx.open_in_place(&mut pkt, &mut window, 0).is_err() {
            assert_eq!(window.highest(), 0, "a rejected packet moved the replay window");
        }
    }
});
