# Fit marrow's benchmark models with brms (R + Stan) on the same data, and time the phases.
#
#   Rscript benchmarks/bench_brms.R MODEL PATIENTS_CSV RECOVERY_CSV OUT_RDS OUT_JSON [SEED]
#
# MODEL is "response" (hierarchical logistic on binomial cell counts, the same aggregation marrow
# uses), "response-bernoulli" (the same model with one Bernoulli row per patient, as a brms user
# writes it: same likelihood and posterior, a much longer Stan loop) or "recovery" (censored
# Weibull over the long recovery table, no cure fraction). 4 chains,
# 1000 warm-up + 1000 draws, 2 cores. The JSON file gets the phase times (library load, data,
# compile, sampling, save) and the diagnostics; the wrapper bench_brms.py adds the end-to-end
# process time and peak memory. Priors follow marrow's default prior set (weakly-informative):
#   response, response-bernoulli: intercept Normal(0, 1.5), coefficients Normal(0, 1),
#   center sd HalfNormal(1);
#   recovery: see the comments at the recovery formula (brms parameterises the Weibull by its mean).

t_start <- proc.time()[["elapsed"]]
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 5) stop("usage: bench_brms.R MODEL PATIENTS_CSV RECOVERY_CSV OUT_RDS OUT_JSON [SEED]")
model <- args[[1]]
patients_csv <- args[[2]]
recovery_csv <- args[[3]]
out_rds <- args[[4]]
out_json <- args[[5]]
seed <- if (length(args) >= 6) as.integer(args[[6]]) else 2017L
covariates <- c("prior_atg", "active_infection")

elapsed <- function() proc.time()[["elapsed"]]
phase <- list()

t0 <- elapsed()
suppressPackageStartupMessages({
  library(brms)
  library(rstan)
})
# Debian's r-cran-bh is an empty stub pointing at the system Boost headers; rstan only checks
# that the boost_lib option names an existing folder.
if (!file.exists(rstan_options("boost_lib"))) rstan_options(boost_lib = "/usr/include")
phase$library_s <- elapsed() - t0

t0 <- elapsed()
patients <- read.csv(patients_csv, stringsAsFactors = FALSE)
response_priors <- c(
  set_prior("normal(0, 1.5)", class = "b", coef = "Intercept"),
  set_prior("normal(0, 1)", class = "b", coef = "prior_atg"),
  set_prior("normal(0, 1)", class = "b", coef = "active_infection"),
  set_prior("normal(0, 1)", class = "sd")  # brms bounds sd at 0: a half-normal
)
if (model %in% c("response", "response-bernoulli")) {
  patients$responder <- as.integer(toupper(trimws(patients$response)) %in% c("CR", "PR"))
  priors <- response_priors
}
if (model == "response") {
  patients$n <- 1L
  # Binomial counts per (center, covariate pattern) cell: exact, as in marrow.
  data <- aggregate(cbind(y = responder, n = n) ~ center + prior_atg + active_infection,
                    data = patients, FUN = sum)
  formula <- bf(y | trials(n) ~ 0 + Intercept + prior_atg + active_infection + (1 | center))
  family <- binomial()
} else if (model == "response-bernoulli") {
  # One row per patient: what a brms user writes (same posterior as the cell counts).
  data <- patients[, c("responder", "center", covariates)]
  formula <- bf(responder ~ 0 + Intercept + prior_atg + active_infection + (1 | center))
  family <- bernoulli()
} else if (model == "recovery") {
  recovery <- read.csv(recovery_csv, stringsAsFactors = FALSE)
  # Covariates centred at their mean over the patients table, as in marrow.
  for (name in covariates) patients[[name]] <- patients[[name]] - mean(patients[[name]])
  data <- merge(recovery, patients[, c("patient_id", covariates)], by = "patient_id", sort = FALSE)
  data$lineage <- factor(data$lineage, levels = unique(recovery$lineage))
  data$censored <- 1L - as.integer(data$recovered)
  # marrow: log median_l = log_median_mu + log_median_sd * z_l, log_median_mu ~ N(3.4, 1),
  # log_median_sd ~ HN(0.5); log shape_l likewise with N(0.7, 0.7), HN(0.5); time effects N(0, 0.5).
  # brms has no partial pooling of fixed lineage terms short of (1 | lineage) on 3 levels, and puts
  # the Weibull on its mean (log link) rather than its median; the closest model is independent
  # lineage terms with the marginal priors, a lineage-specific shape (log link) and the same
  # covariates. The mean and the median differ by log(Gamma(1 + 1/k) / log(2)^(1/k)), under 0.2
  # on the log scale for shapes above 1.
  formula <- bf(day | cens(censored) ~ 0 + lineage + prior_atg + active_infection, shape ~ 0 + lineage)
  family <- weibull()
  lineage_coefs <- paste0("lineage", levels(data$lineage))
  priors <- c(
    set_prior("normal(0, 0.5)", class = "b"),
    do.call(c, lapply(lineage_coefs, function(coef) set_prior("normal(3.4, 1.1)", class = "b", coef = coef))),
    set_prior("normal(0.7, 0.7)", class = "b", dpar = "shape")
  )
} else {
  stop("MODEL must be response, response-bernoulli or recovery")
}
phase$data_s <- elapsed() - t0
phase$rows <- nrow(data)

# Compile once (chains = 0 builds and compiles the Stan program without sampling) ...
t0 <- elapsed()
compiled <- brm(formula, data = data, family = family, prior = priors, chains = 0,
                backend = "rstan", silent = 2, refresh = 0)
phase$compile_s <- elapsed() - t0

# ... then sample the compiled program: 4 chains, 1000 + 1000, 2 cores.
t0 <- elapsed()
fit <- update(compiled, recompile = FALSE, chains = 4, cores = 2, iter = 2000, warmup = 1000,
              seed = seed, refresh = 0, silent = 2)
phase$sample_s <- elapsed() - t0

t0 <- elapsed()
saveRDS(fit, out_rds)
phase$save_s <- elapsed() - t0

# Diagnostics over the model's parameters (population effects, sd and center effects).
draws <- posterior::as_draws_array(fit)
variables <- posterior::variables(draws)
keep <- variables[grepl("^(b_|sd_|r_)", variables)]
summary <- posterior::summarise_draws(posterior::subset_draws(draws, variable = keep),
                                      "rhat", "ess_bulk")
estimates <- posterior::summarise_draws(
  posterior::subset_draws(draws, variable = variables[grepl("^(b_|sd_)", variables)]), "mean")
chain_times <- rstan::get_elapsed_time(fit$fit)
result <- list(
  tool = "brms",
  model = model,
  brms_version = as.character(packageVersion("brms")),
  rstan_version = as.character(packageVersion("rstan")),
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  library_s = phase$library_s,
  data_s = phase$data_s,
  rows = phase$rows,
  compile_s = phase$compile_s,
  sample_s = phase$sample_s,
  save_s = phase$save_s,
  chain_seconds_max = max(rowSums(chain_times)),
  in_process_s = elapsed() - t_start,
  divergences = sum(rstan::get_num_divergent(fit$fit)),
  rhat_max = max(summary$rhat, na.rm = TRUE),
  ess_bulk_min = min(summary$ess_bulk, na.rm = TRUE),
  ess_bulk_min_variable = summary$variable[which.min(summary$ess_bulk)],
  estimates = setNames(as.list(estimates$mean), estimates$variable)
)
writeLines(jsonlite::toJSON(result, auto_unbox = TRUE, digits = NA, pretty = TRUE), out_json)
