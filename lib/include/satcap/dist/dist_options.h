// How a training run is spread over processes: the launch (--distributed, --nproc), the time a
// process waits for the others, and the gradient buckets. One field table (satcap/runtime/option_table.h)
// gives the flags and their help. These are settings of the run, like --threads and --device, not
// of the model: they are not written to config.effective.json, and a run may be resumed with any
// number of processes. No torch here.
#pragma once

#include <tuple>

#include "satcap/runtime/option_table.h"

namespace satcap {

struct DistOptions {
  // This process is one of a distributed run: the rendezvous comes from the environment, as
  // torchrun and cluster schedulers set it (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK).
  bool distributed = false;
  // Start this many worker processes on this machine (0 = none: train in this process). The
  // launcher hosts the rendezvous store and divides the cores among the workers unless --threads
  // is given.
  int nproc = 0;
  // Seconds a process waits for the others before giving up: the rendezvous, and each collective
  // when a peer is alive but silent (hung, or cut off by the network). It must exceed the longest
  // legitimate wait of one process for another: the ranks of a cluster job starting minutes apart,
  // rank 0 alone writing a checkpoint of the COCO-scale model to a slow shared folder. A peer that
  // dies is not waited for: see heartbeat_timeout.
  double timeout = 300;
  // Seconds without a heartbeat after which a process is taken for dead (killed, stopped, its
  // machine gone) and every other process exits, naming it. A crash is usually noticed at once
  // (its connections close, or the launcher reports it); this bounds the rest.
  double heartbeat_timeout = 10;
  // Gradients are summed across processes in buckets of about this many MiB, each sent as soon as
  // the backward pass has produced it (PyTorch's DistributedDataParallel uses 25).
  double bucket_mb = 25;

  static constexpr auto fields() {
    using O = DistOptions;
    return std::make_tuple(
        option("distributed", &O::distributed,
               "Be one process of a distributed run: rendezvous from MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and "
               "LOCAL_RANK, as torchrun or a scheduler sets them (docs/distributed.md)"),
        option("nproc", &O::nproc,
               "Train with N worker processes on this machine (one model, data parallel; the cores are divided among "
               "them unless --threads is given); 0 = this process alone"),
        option("timeout", &O::timeout,
               "Seconds a process waits for the others (rendezvous, collectives) before it gives up", "--dist-timeout"),
        option("heartbeat_timeout", &O::heartbeat_timeout,
               "Seconds without a heartbeat before a process is taken for dead and the others stop",
               "--dist-heartbeat-timeout"),
        option("bucket_mb", &O::bucket_mb, "Gradients are summed across processes in buckets of this many MiB",
               "--dist-bucket-mb"));
  }
};

// Throws UsageError naming the flag ("--nproc must be at least 0 (got -1)").
void validate(const DistOptions& options);

}  // namespace satcap
