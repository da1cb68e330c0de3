//! `fwd-loadgen`: many simulated OpenVPN clients from one process (see `fwd::loadgen`).

use std::process::ExitCode;

use fwd::loadgen::{self, args};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let a = match args::parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fwd-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    fwd::cli::init_logging(a.verb);
    let result = loadgen::load_profile(&a.config).and_then(|plan| {
        let server = loadgen::server_addr(&plan, a.server)?;
        let opts = a.options(server);
        println!(
            "fwd-loadgen: {} clients -> {server}, {} handshakes/s, {} pps x {} B each, \
             {} threads, {:.1} s (+{:.1} s drain)",
            opts.clients,
            opts.rate,
            opts.pps,
            opts.size,
            opts.threads,
            opts.duration.as_secs_f64(),
            opts.drain.as_secs_f64()
        );
        loadgen::run(&plan, &opts)
    });
    match result {
        Ok(report) => {
            println!("{report}");
            println!("{}", report.machine_line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fwd-loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}
