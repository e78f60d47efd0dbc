//! `cargo bench -p gridmuc-mask`: masked-mode costs at 200 houses, printed once.

fn main() -> Result<(), gridmuc_mask::MaskError> {
    let houses = std::env::var("HOUSES")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(200);
    let report = gridmuc_mask::bench_masked(houses, 200, 2026)?;
    println!("{report:#?}");
    Ok(())
}
