//! Tun against the real kernel, inside a throwaway network namespace: a multi-queue device
//! carries packets both ways. Skips with a reason when namespaces or tun are unavailable.

use std::net::{Ipv6Addr, UdpSocket};

use fwd::os::netlink::Netlink;
use fwd::os::netns::NetnsGuard;
use fwd::os::tun::{self, Tun};

#[test]
fn multiqueue_tun_reads_kernel_packets() {
    let ns = match NetnsGuard::new("fwdtest-tun") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping: cannot create network namespace: {e}");
            return;
        }
    };
    ns.run_in(|| {
        let tun = match Tun::create("fwdmq%d", 2) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping: cannot create multi-queue tun: {e}");
                return;
            }
        };
        assert_eq!(tun.queue_fds().len(), 2);
        let mut nl = Netlink::open().unwrap();
        let idx = nl.link_index(tun.name()).unwrap();
        nl.set_link_up(idx).unwrap();
        nl.add_address(idx, "fd00:1::1".parse().unwrap(), 64, None)
            .unwrap();

        // A datagram to an on-link address leaves through the tun; the kernel picks a queue
        // per flow, so poll both.
        let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
        s.send_to(b"probe", "[fd00:1::2]:9999").unwrap();
        for fd in tun.queue_fds() {
            fwd::os::set_nonblocking(std::os::fd::AsFd::as_fd(fd), true).unwrap();
        }
        let mut buf = [0u8; 2048];
        let mut got = None;
        for _ in 0..200 {
            for q in 0..2 {
                if let Ok(n) = tun.read(q, &mut buf) {
                    // Skip router solicitations and other kernel chatter.
                    if n >= 48 && buf[0] >> 4 == 6 && buf[6] == 17 && &buf[n - 5..n] == b"probe" {
                        got = Some(n);
                    }
                }
            }
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let n = got.expect("UDP probe never appeared on the tun");
        assert_eq!(n, 40 + 8 + 5);

        // Writing a packet back must be accepted whole.
        let w = tun::write_fd(std::os::fd::AsFd::as_fd(&tun.queue_fds()[1]), &buf[..n]).unwrap();
        assert_eq!(w, n);
    })
    .unwrap();
}
