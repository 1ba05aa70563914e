//! The verbs conformance suite: one set of test bodies, run against each provider by
//! device name.
//!
//! By default it runs on `soft` and `sim`. `USEC_CONFORMANCE_DEVICES` picks the providers:
//! a comma-separated list of `soft`, `sim` and ibverbs device names (e.g. `rxe0`, which is
//! how the SoftRoCE VM run selects the ibverbs provider). Where rxe behaves differently
//! from what a test expects of a NIC (see `setup::RxeQuirk`), the test checks what rxe does
//! instead on rxe devices only, and prints the limitation.

mod errors;
mod ops;
mod ordering;
mod permissions;
mod processes;
mod retirement;
mod setup;
mod states;

use libtest_mimic::{Arguments, Trial};
use setup::{Outcome, Provider};

type Body = fn(&Provider) -> Outcome;

const TESTS: &[(&str, Body)] = &[
    ("ops::write_then_read_back", ops::write_then_read_back),
    ("ops::gather_and_inline_writes", ops::gather_and_inline_writes),
    ("ops::send_and_receive", ops::send_and_receive),
    ("ops::send_with_imm_and_scatter", ops::send_with_imm_and_scatter),
    ("ops::write_with_imm_consumes_a_recv", ops::write_with_imm_consumes_a_recv),
    ("ops::compare_and_swap", ops::compare_and_swap),
    ("ops::fetch_and_add", ops::fetch_and_add),
    ("ops::unsignaled_requests_and_post_lists", ops::unsignaled_requests_and_post_lists),
    ("ops::wr_ids_come_back_untouched", ops::wr_ids_come_back_untouched),
    ("ops::zero_length_operations", ops::zero_length_operations),
    ("ops::edge_offsets", ops::edge_offsets),
    ("ops::one_mebibyte_write", ops::one_mebibyte_write),
    ("errors::bad_rkey", errors::bad_rkey),
    ("errors::out_of_bounds", errors::out_of_bounds),
    ("errors::address_overflow", errors::address_overflow),
    ("errors::mr_lacks_remote_write", errors::mr_lacks_remote_write),
    ("errors::qp_lacks_remote_read", errors::qp_lacks_remote_read),
    ("errors::misaligned_atomic", errors::misaligned_atomic),
    ("errors::bad_lkey", errors::bad_lkey),
    ("errors::local_sge_outside_mr", errors::local_sge_outside_mr),
    ("errors::read_into_memory_without_local_write", errors::read_into_memory_without_local_write),
    ("errors::atomic_with_wrong_local_length", errors::atomic_with_wrong_local_length),
    ("errors::recv_buffer_too_small", errors::recv_buffer_too_small),
    ("errors::rnr_retry_exceeded", errors::rnr_retry_exceeded),
    ("errors::rnr_then_recv_arrives", errors::rnr_then_recv_arrives),
    ("errors::error_flushes_everything", errors::error_flushes_everything),
    ("errors::post_time_refusals", errors::post_time_refusals),
    ("errors::send_queue_full", errors::send_queue_full),
    ("errors::state_machine_refuses_bad_transitions", errors::state_machine_refuses_bad_transitions),
    ("errors::foreign_endpoints_are_refused", errors::foreign_endpoints_are_refused),
    ("states::transitions_follow_the_ib_state_diagram", states::transitions_follow_the_ib_state_diagram),
    (
        "states::access_changes_only_where_the_state_may_be_modified",
        states::access_changes_only_where_the_state_may_be_modified,
    ),
    ("states::rts_attributes_are_fixed_once_in_rts", states::rts_attributes_are_fixed_once_in_rts),
    ("ordering::requests_complete_in_post_order", ordering::requests_complete_in_post_order),
    ("ordering::write_lands_in_increasing_address_order", ordering::write_lands_in_increasing_address_order),
    ("permissions::qp_access_revocation_under_a_writer", permissions::qp_access_revocation_under_a_writer),
    ("permissions::mr_rereg_revocation_under_a_writer", permissions::mr_rereg_revocation_under_a_writer),
    ("permissions::regrant_after_revocation", permissions::regrant_after_revocation),
    ("permissions::deregistered_memory_is_unreachable", permissions::deregistered_memory_is_unreachable),
    ("permissions::reconnect_after_error", permissions::reconnect_after_error),
    ("permissions::mr_of_another_pd_is_unreachable", permissions::mr_of_another_pd_is_unreachable),
    (
        "retirement::destroyed_qp_then_deregistered_mr_under_a_writer",
        retirement::destroyed_qp_then_deregistered_mr_under_a_writer,
    ),
    (
        "retirement::reset_qp_then_deregistered_mr_under_a_writer",
        retirement::reset_qp_then_deregistered_mr_under_a_writer,
    ),
    (
        "retirement::errored_qp_then_deregistered_mr_under_a_writer",
        retirement::errored_qp_then_deregistered_mr_under_a_writer,
    ),
    ("processes::killed_peer_fails_requests", processes::killed_peer_fails_requests),
    ("processes::closed_peer_fails_requests", processes::closed_peer_fails_requests),
    ("processes::fetch_add_from_two_processes", processes::fetch_add_from_two_processes),
];

fn providers() -> Vec<Provider> {
    let list = std::env::var("USEC_CONFORMANCE_DEVICES").unwrap_or_else(|_| "soft,sim".into());
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| match name {
            "soft" => Provider::Soft,
            "sim" => Provider::Sim,
            device => Provider::Ibverbs(device.to_string()),
        })
        .collect()
}

fn main() {
    if std::env::var_os(processes::CHILD_ENV).is_some() {
        processes::run_child();
        return;
    }
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for provider in providers() {
        for &(name, body) in TESTS {
            let full_name = format!("{}::{name}", provider.label());
            let provider = provider.clone();
            trials.push(Trial::test(full_name, move || body(&provider)));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
