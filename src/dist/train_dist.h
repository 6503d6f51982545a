#pragma once
/// @file train_dist.h
/// `recforge train` as one process of a distributed job (`mpirun -np P recforge train CONFIG`,
/// P > 1): the sharded data (dataset_dist.h), distributed iALS (ials_dist.h), evaluation
/// sharded by user with the metrics summed over ranks, and one run directory written by rank 0
/// from the gathered factors, in the format of a single-process run (pipeline::open_run
/// reopens it). docs/distributed.md.

#include <string>

#include "config/config.h"
#include "dist/comm.h"
#include "dist/errors.h"

namespace recforge::dist {

/// Trains `cfg` across the ranks of `comm`; returns the run directory on every rank.
std::string train_distributed(const config::Config& cfg, const Comm& comm);

}  // namespace recforge::dist
