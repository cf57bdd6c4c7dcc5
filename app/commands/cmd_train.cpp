// `satcap train`: trains a decoder on a dataset's prepared features (or, with --fine-tune-encoder, on
// its images together with the encoder's last blocks) and writes a model bundle.
// Options: defaults < --config FILE.json < the command line; the effective set is written to
// <out>/config.effective.json.
// Several processes (docs/distributed.md): --nproc N starts N workers on this machine (this same
// command with --distributed); --distributed joins a run whose rendezvous the environment gives
// (torchrun, a scheduler).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <memory>

#include "command.h"
#include "options_cli.h"
#include "satcap/dist/communicator.h"
#include "satcap/dist/launcher.h"
#include "satcap/runtime/error.h"
#include "satcap/runtime/input_file.h"
#include "satcap/runtime/runtime.h"
#include "satcap/train/run_training.h"

namespace satcap::app {
namespace {

struct TrainCommand {
  TrainCommandOptions command;
  TrainOptions options;     // the values typed on the command line (the others: defaults)
  std::string config;       // --config FILE.json
  OptionBinder binder;      // which TrainOptions the user typed
  DistOptions dist;         // --distributed, --nproc, --dist-*
};

// --nproc N: this command again, N times, as the workers of one run.
int launch_workers(const DistOptions& dist) {
  LaunchOptions launch;
  launch.nproc = dist.nproc;
  launch.quiet = global_options().quiet;
  // The others notice a failed worker within a heartbeat or two; after that they are killed.
  launch.grace = std::chrono::milliseconds(static_cast<int64_t>(dist.heartbeat_timeout * 1000)) + std::chrono::seconds(5);
  std::vector<std::string> arguments = command_arguments();
  arguments.push_back("--distributed");
  return run_local_workers(launch, arguments);
}

// --distributed: the rendezvous, this process's share of the cores (LOCAL_WORLD_SIZE processes share
// this machine) and its GPU (LOCAL_RANK), unless --threads and --device say otherwise.
std::unique_ptr<Communicator> join_run(const DistOptions& dist, c10::Device& device) {
  const DistEnvironment env = read_dist_environment();
  if (global_options().threads == 0) configure_threads(std::max(1, available_cores() / env.local_world_size));
  if (device.is_cuda() && !device.has_index()) device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  auto comm = Communicator::connect(env, dist, device);
  if (!global_options().quiet) std::cerr << "satcap: " << comm->describe() << std::endl;
  return comm;
}

const CommandRegistration registration{
    "train", "Train a decoder (soft or hard attention) on a dataset's features and write a model bundle",
    [](CLI::App& sub) -> RunFunction {
      auto t = std::make_shared<TrainCommand>();
      auto& c = t->command;
      TrainOptions& o = t->options;
      sub.add_option("--data", c.data,
                     "Dataset: a COCO captions file, a Karpathy dataset.json, a Flickr8k token file, or a folder")
          ->required();
      sub.add_option("--out", c.out, "Output folder: model/ (best bundle), checkpoint.pt, train_log.jsonl, curves.png")
          ->required();
      sub.add_option("--features", c.features,
                     "Prepared feature store (satcap prepare); \"\" = prepare one into <out>/features")
          ->capture_default_str();
      sub.add_option("--encoder", c.encoder, "Encoder used to prepare features when --features is not given (or fine-tuned)")
          ->capture_default_str();
      sub.add_option("--min-word-count", c.min_word_count, "Words seen fewer times in training captions become <unk>")
          ->capture_default_str();
      sub.add_flag("!--no-eval-test", c.eval_test, "Do not score the best model on the test split at the end");
      sub.add_flag("--overwrite", c.overwrite,
                   "Start a new run in --out although it holds one: deletes that run's model/, checkpoint.pt, "
                   "train_log.jsonl, curves.png, config.effective.json, vocab.json and test_scores.json (a features/ "
                   "store and other files are kept)");
      sub.add_option("--config", t->config, "JSON file of training options (keys as in config.effective.json); the "
                                            "command line overrides it")
          ->capture_default_str();

      t->binder.add(sub, o);
      OptionBinder dist_binder;
      dist_binder.add(sub, t->dist);

      return [t] {
        validate(t->dist);
        nlohmann::json config;
        if (!t->config.empty()) config = read_json_file(t->config, ExitCode::input);
        const nlohmann::json typed = t->binder.typed(to_json(t->options));
        TrainOptions effective = resolve_train_options(t->config.empty() ? nullptr : &config, typed, t->config);
        // What the user gave (a resumed run keeps its own values for the rest).
        nlohmann::json given = config.is_object() ? config : nlohmann::json::object();
        given.merge_patch(typed);
        t->command.given_options = given;
        c10::Device device = parse_device(global_options().device);
        if (t->dist.nproc > 0 && !t->dist.distributed) return launch_workers(t->dist);
        std::unique_ptr<Communicator> comm;
        if (t->dist.distributed) comm = join_run(t->dist, device);
        TrainSummary s;
        try {
          s = run_training(t->command, effective, device, global_options().quiet, comm.get());
        } catch (const TrainingStopped&) {  // every process stopped at the same step, after rank 0's checkpoint
          throw;
        } catch (const Error& e) {  // the others stop too, naming this rank and the error
          if (comm) comm->abort(e.what(), static_cast<int>(e.code()));
          throw;
        } catch (const std::invalid_argument& e) {
          if (comm) comm->abort(e.what(), static_cast<int>(ExitCode::usage));
          throw;
        } catch (const std::exception& e) {
          if (comm) comm->abort(e.what(), static_cast<int>(ExitCode::internal));
          throw;
        }
        if (!comm || comm->is_main())
          std::cout << t->command.out << "/model: " << s.steps << " steps, " << s.epochs_completed
                    << " epochs, best validation BLEU-4 " << s.best_bleu4 << " (epoch " << s.best_epoch << ")"
                    << (comm ? ", " + std::to_string(comm->size()) + " processes" : std::string()) << "\n";
        return 0;
      };
    }};

}  // namespace
}  // namespace satcap::app
