#pragma once
// Everything idtune offers, layer by layer. Embedders may include just the headers they use.

// core: errors, JSON reading, name tables, noise, devices, signals
#include "idtune/core/atomic_file.h"
#include "idtune/core/device.h"
#include "idtune/core/error.h"
#include "idtune/core/fair_share.h"
#include "idtune/core/file_lock.h"
#include "idtune/core/interrupt.h"
#include "idtune/core/json_reader.h"
#include "idtune/core/name_patterns.h"
#include "idtune/core/name_table.h"
#include "idtune/core/noise.h"
#include "idtune/core/precision.h"
#include "idtune/core/runtime.h"
#include "idtune/core/shard.h"
#include "idtune/core/text.h"
#include "idtune/core/torchscript.h"

// diffusion: schedules, model card, score model, samplers, KL, adjoint
#include "idtune/diffusion/adjoint.h"
#include "idtune/diffusion/backprop_through_sampler.h"
#include "idtune/diffusion/girsanov_kl.h"
#include "idtune/diffusion/lora.h"
#include "idtune/diffusion/model_card.h"
#include "idtune/diffusion/reward_fn.h"
#include "idtune/diffusion/sampler.h"
#include "idtune/diffusion/sampling.h"
#include "idtune/diffusion/schedule.h"
#include "idtune/diffusion/score_model.h"
#include "idtune/diffusion/toy_models.h"

// training: queues, trainer, checkpoints, rewards, tune config
#include "idtune/training/adjoint_queue.h"
#include "idtune/training/builtin_rewards.h"
#include "idtune/training/reward.h"
#include "idtune/training/sample_queue.h"
#include "idtune/training/trainer.h"
#include "idtune/training/tune_config.h"

// langevin: potentials and the Langevin family (Algorithm 2)
#include "idtune/langevin/chain.h"
#include "idtune/langevin/config.h"
#include "idtune/langevin/gaussian_mixture.h"
#include "idtune/langevin/gradient.h"
#include "idtune/langevin/potential.h"
#include "idtune/langevin/reference.h"
#include "idtune/langevin/reward.h"
#include "idtune/langevin/trainer.h"

// distributed: the c10d process group of data-parallel runs, and local workers
#include "idtune/distributed/local_launcher.h"
#include "idtune/distributed/process_group.h"

// eval (idtune::io): classifier, idx datasets, image grids, Fréchet distance
#include "idtune/eval/classifier.h"
#include "idtune/eval/frechet_distance.h"
#include "idtune/eval/idx_images.h"
#include "idtune/eval/image_grid.h"

// run (idtune::io): run directories of idtune tune / idtune langevin
#include "idtune/run/langevin_run.h"
#include "idtune/run/tune_run.h"
