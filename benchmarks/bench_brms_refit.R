# brms's way to run a simulation study of the bundled design: compile the hierarchical logistic model
# once, then refit it on each simulated trial with update(..., recompile = FALSE). Times each refit.
#
#   Rscript benchmarks/bench_brms_refit.R PATIENTS_CSV N_REFITS OUT_JSON [SEED]
#
# Simulated trials keep the bundled trial's patients (centers, prior_atg, active_infection) and redraw
# the responders: center effects ~ Normal(0, 0.5) on the logit scale around logit(rate), rate 0.15 or
# 0.35 alternately (marrow's null and target scenarios). The model and priors are those of
# bench_brms.R's "response" (binomial cell counts): intercept Normal(0, 1.5), coefficients Normal(0, 1),
# center sd HalfNormal(1); 4 chains of 500 warm-up + 500 draws, chains run one after another (cores = 1),
# as one Dask worker of marrow's study runs them.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 3) stop("usage: bench_brms_refit.R PATIENTS_CSV N_REFITS OUT_JSON [SEED]")
patients <- read.csv(args[[1]], stringsAsFactors = FALSE)
n_refits <- as.integer(args[[2]])
out_json <- args[[3]]
seed <- if (length(args) >= 4) as.integer(args[[4]]) else 2017L
elapsed <- function() proc.time()[["elapsed"]]

t0 <- elapsed()
suppressPackageStartupMessages({
  library(brms)
  library(rstan)
})
if (!file.exists(rstan_options("boost_lib"))) rstan_options(boost_lib = "/usr/include")
library_s <- elapsed() - t0

set.seed(seed)
centers <- sort(unique(patients$center))
simulate <- function(rate) {
  effect <- rnorm(length(centers), 0, 0.5)
  eta <- qlogis(rate) + effect[match(patients$center, centers)]
  d <- patients[, c("center", "prior_atg", "active_infection")]
  d$y <- rbinom(nrow(d), 1, plogis(eta))
  d$n <- 1L
  aggregate(cbind(y = y, n = n) ~ center + prior_atg + active_infection, data = d, FUN = sum)
}
priors <- c(
  set_prior("normal(0, 1.5)", class = "b", coef = "Intercept"),
  set_prior("normal(0, 1)", class = "b", coef = "prior_atg"),
  set_prior("normal(0, 1)", class = "b", coef = "active_infection"),
  set_prior("normal(0, 1)", class = "sd")
)
formula <- bf(y | trials(n) ~ 0 + Intercept + prior_atg + active_infection + (1 | center))

t0 <- elapsed()
fit <- brm(formula, data = simulate(0.15), family = binomial(), prior = priors, chains = 4,
           iter = 1000, warmup = 500, cores = 1, seed = seed, refresh = 0, silent = 2)
first_s <- elapsed() - t0

refit_s <- numeric(0)
divergent <- integer(0)
for (i in seq_len(n_refits)) {
  data <- simulate(if (i %% 2 == 1) 0.15 else 0.35)
  t0 <- elapsed()
  refit <- update(fit, newdata = data, recompile = FALSE, chains = 4, iter = 1000, warmup = 500,
                  cores = 1, seed = seed + i, refresh = 0, silent = 2)
  refit_s <- c(refit_s, elapsed() - t0)
  np <- nuts_params(refit)
  divergent <- c(divergent, sum(np$Value[np$Parameter == "divergent__"]))
}
json <- sprintf(
  '{"tool": "brms", "case": "simulate-refit", "library_s": %.3f, "first_fit_s": %.3f, "n_refits": %d, "refit_s": [%s], "median_refit_s": %.3f, "divergent": [%s], "brms": "%s", "rstan": "%s"}',
  library_s, first_s, n_refits, paste(sprintf("%.3f", refit_s), collapse = ", "), median(refit_s),
  paste(divergent, collapse = ", "), as.character(packageVersion("brms")), as.character(packageVersion("rstan")))
writeLines(json, out_json)
cat(json, "\n")
