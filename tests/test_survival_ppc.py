"""Replicated deaths follow each patient to a censoring time, drawn for those who died (reverse KM)."""

import numpy as np

from marrow.models.survival import potential_censoring


def _trial(rng, n=300):
    death = 300.0 * rng.weibull(1.2, n)
    censor = rng.uniform(50.0, 900.0, n)
    return np.minimum(death, censor), (death <= censor).astype(np.int64)


def test_replicated_deaths_match_observed_deaths_under_the_true_model():
    rng = np.random.default_rng(7)
    observed, new, old = [], [], []
    for _ in range(20):
        time, died = _trial(rng)
        censoring = potential_censoring(time, died, rng, 200)
        replicated = 300.0 * rng.weibull(1.2, censoring.shape)  # draws from the true death distribution
        observed.append(died.sum())
        new.append((replicated <= censoring).sum(axis=1).mean())
        old.append((replicated <= time).sum(axis=1).mean())  # follow-up as if it were the censoring time
    se = np.std(observed) / np.sqrt(len(observed))
    assert abs(np.mean(new) - np.mean(observed)) < 3 * se + 1
    assert np.mean(old) < np.mean(observed) - 10 * se  # what the check did before: far too few deaths


def test_censored_patients_keep_their_follow_up_and_the_dead_are_censored_later():
    rng = np.random.default_rng(1)
    time, died = _trial(rng, 80)
    censoring = potential_censoring(time, died, rng, 50)
    assert np.array_equal(censoring[:, died == 0], np.broadcast_to(time[died == 0], (50, (died == 0).sum())))
    dead = censoring[:, died == 1]
    assert (dead > time[died == 1]).all()
    finite = np.isfinite(dead)
    assert np.isin(dead[finite], time[died == 0]).all()  # drawn among the observed censoring times
    assert potential_censoring(time, np.ones_like(died), rng, 3).min() == np.inf  # nobody censored: follow to death
