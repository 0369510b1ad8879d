//! The budget with time as an input: no clock, no sleeping.

use std::time::{Duration, Instant};

use super::{BudgetPolicy, RetryBudget};

fn policy(percent: u32, min_per_second: u32) -> BudgetPolicy {
    BudgetPolicy {
        percent,
        min_per_second,
        window: Duration::from_secs(10),
    }
}

fn withdrawals(budget: &RetryBudget, now: Instant, tries: usize) -> usize {
    (0..tries).filter(|_| budget.try_withdraw(now)).count()
}

#[test]
fn retries_add_at_most_the_share_of_requests() {
    let t0 = Instant::now();
    let budget = RetryBudget::new(policy(20, 0), t0);
    for _ in 0..1000 {
        budget.deposit(t0);
    }
    assert_eq!(withdrawals(&budget, t0, 1000), 200);
    // More requests, more room.
    for _ in 0..100 {
        budget.deposit(t0);
    }
    assert_eq!(withdrawals(&budget, t0, 1000), 20);
}

#[test]
fn the_floor_allows_retries_without_traffic() {
    let t0 = Instant::now();
    let budget = RetryBudget::new(policy(20, 10), t0);
    // 10 per second over a 10 s window.
    assert_eq!(withdrawals(&budget, t0, 1000), 100);
}

#[test]
fn zero_percent_leaves_only_the_floor() {
    let t0 = Instant::now();
    let budget = RetryBudget::new(policy(0, 1), t0);
    for _ in 0..1000 {
        budget.deposit(t0);
    }
    assert_eq!(withdrawals(&budget, t0, 1000), 10);
}

#[test]
fn requests_and_retries_age_out_of_the_window() {
    let t0 = Instant::now();
    let budget = RetryBudget::new(policy(50, 0), t0);
    for _ in 0..100 {
        budget.deposit(t0);
    }
    assert_eq!(withdrawals(&budget, t0, 100), 50);
    // Half a window later the same requests still count, and so do the retries.
    let half = t0 + Duration::from_secs(5);
    assert_eq!(withdrawals(&budget, half, 100), 0);
    for _ in 0..100 {
        budget.deposit(half);
    }
    assert_eq!(withdrawals(&budget, half, 100), 50);
    // A window after the first requests, only the second half counts: 100
    // requests allow 50 retries, all spent at `half`.
    let later = t0 + Duration::from_millis(10_500);
    assert_eq!(withdrawals(&budget, later, 100), 0);
    // Long after everything: an empty window.
    let much_later = t0 + Duration::from_secs(60);
    assert_eq!(withdrawals(&budget, much_later, 100), 0);
    for _ in 0..10 {
        budget.deposit(much_later);
    }
    assert_eq!(withdrawals(&budget, much_later, 100), 5);
}

#[test]
fn a_clock_that_goes_backwards_changes_nothing() {
    let t0 = Instant::now() + Duration::from_secs(5);
    let budget = RetryBudget::new(policy(100, 0), t0);
    budget.deposit(t0);
    let earlier = t0 - Duration::from_secs(1);
    assert!(budget.try_withdraw(earlier));
    assert!(!budget.try_withdraw(earlier));
}

#[test]
fn a_refunded_retry_can_be_withdrawn_again() {
    let policy = BudgetPolicy {
        percent: 0,
        min_per_second: 1,
        window: Duration::from_secs(1),
    };
    let start = Instant::now();
    let budget = RetryBudget::new(policy, start);
    assert!(budget.try_withdraw(start));
    assert!(!budget.try_withdraw(start));
    budget.refund(start);
    assert!(budget.try_withdraw(start));
    // A refund with nothing withdrawn gives nothing.
    let empty = RetryBudget::new(policy, start);
    empty.refund(start);
    assert!(empty.try_withdraw(start));
    assert!(!empty.try_withdraw(start));
}
