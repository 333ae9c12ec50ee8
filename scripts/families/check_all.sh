#!/usr/bin/env bash
# Every test network of scripts/families/ through scripts/export_model.py -> scripts/check_export.py,
# on its seeded random initialisation, in a temporary folder (or $1), one thread, timed.
#   scripts/families/check_all.sh [work-dir]
# Exit status 0 when every case exports and checks; the table lists seconds per case.
set -uo pipefail
cd "$(dirname "$0")/../.."
py=/usr/bin/python3
fam=scripts/families
work=${1:-$(mktemp -d)}
mkdir -p "$work"
export IDTUNE_NUM_THREADS=1 OMP_NUM_THREADS=1
check="--steps 8 --n 16"
failed=0
results=()

# case NAME "export arguments" "check arguments"
case_() {
  local name=$1 exp=$2 chk=$3 start log=$work/$1.log
  start=$(date +%s.%N)
  if $py scripts/export_model.py $exp --out "$work/$name.pt" >"$log" 2>&1 &&
     $py scripts/check_export.py --model "$work/$name.pt" $check $chk >>"$log" 2>&1; then
    results+=("$(printf 'ok    %5.1f s  %s' "$(awk "BEGIN {print $(date +%s.%N) - $start}")" "$name")")
  else
    results+=("$(printf 'FAIL  %5.1f s  %s (%s)' "$(awk "BEGIN {print $(date +%s.%N) - $start}")" "$name" "$log")")
    failed=1
  fi
}

$py $fam/ddpm_attention_unet.py --steps 0 --out "$work/ddpm_state.pt" >/dev/null
$py $fam/v_prediction_unet.py --steps 0 --out "$work/v_state.pt" >/dev/null
$py $fam/v_prediction_unet.py --steps 0 --objective pred_x0 --beta-schedule cosine --out "$work/x0_state.pt" >/dev/null
$py $fam/learned_sigma_unet.py --steps 0 --out "$work/sigma_state.pt" >/dev/null
$py $fam/diffusers_style_unet.py --steps 0 --out "$work/diffusers_state.pt" >/dev/null
$py $fam/latent.py --steps 0 --out "$work/latent" >/dev/null
$py $fam/learned_sigma_unet.py --steps 0 --num-classes 10 --out "$work/class_state.pt" >/dev/null
$py $fam/diffusers_style_unet.py --steps 0 --num-classes 10 --out "$work/diffusers_class_state.pt" >/dev/null
$py $fam/cross_attention_unet.py --steps 0 --out "$work/text_state.pt" --null-out "$work/empty_prompt.pt" \
  >/dev/null
$py $fam/rewards.py --kind conv --channels 3 --out "$work/conv3.pt" >/dev/null
$py $fam/rewards.py --kind conv --channels 1 --out "$work/conv1.pt" >/dev/null
$py -c "import torch, sys; sys.path.insert(0, '$fam'); import ddpm_attention_unet as m
abar = m.alphas_cumprod(); torch.save(1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]]), '$work/betas.pt')
torch.save(abar.float(), '$work/alphas_cumprod.pt')"

case_ ddpm_attention "--module $fam/ddpm_attention_unet.py --class Model --state-dict $work/ddpm_state.pt
  --shape 3 16 16 --schedule ddpm-discrete --beta-schedule linear --beta-start 1e-4 --beta-end 0.02
  --num-train-steps 1000 --prediction epsilon --time-dtype long" "--reward $work/conv3.pt"
case_ ddpm_betas_from "--module $fam/ddpm_attention_unet.py --class Model --state-dict $work/ddpm_state.pt
  --shape 3 16 16 --schedule ddpm-discrete --betas-from $work/betas.pt --prediction epsilon" ""
case_ ddpm_alphas_from "--module $fam/ddpm_attention_unet.py --class Model --state-dict $work/ddpm_state.pt
  --shape 3 16 16 --schedule ddpm-discrete --alphas-cumprod-from $work/alphas_cumprod.pt --prediction epsilon" \
  "--reward red"
case_ v_prediction "--module $fam/v_prediction_unet.py --class build_diffusion --state-dict $work/v_state.pt
  --state-dict-key model --submodule model --shape 1 16 16 --schedule ddpm-discrete
  --alphas-cumprod-attr alphas_cumprod --prediction v --time-dtype long" ""
case_ x0_prediction "--module $fam/v_prediction_unet.py --class build_diffusion
  --init-kwargs {\"objective\":\"pred_x0\",\"beta_schedule\":\"cosine\"} --state-dict $work/x0_state.pt
  --state-dict-key model --submodule model --shape 1 16 16 --schedule ddpm-discrete
  --alphas-cumprod-attr alphas_cumprod --prediction sample --time-dtype long" ""
case_ learned_sigma "--module $fam/learned_sigma_unet.py --class UNetModel --state-dict $work/sigma_state.pt
  --shape 3 16 16 --schedule ddpm-discrete --beta-schedule squaredcos_cap_v2 --num-train-steps 1000
  --prediction epsilon --output-channels 6 --time-dtype long" "--reward channel-mean:2"
case_ diffusers "--module $fam/diffusers_style_unet.py --class UNet2DModel --state-dict $work/diffusers_state.pt
  --shape 1 16 16 --schedule ddpm-discrete --beta-schedule linear --beta-start 1e-4 --beta-end 0.02
  --num-train-steps 1000 --prediction epsilon --time-dtype long" "--reward $work/conv1.pt"
case_ diffusers_tuple_sigmoid "--module $fam/diffusers_style_unet.py --class UNet2DModel
  --state-dict $work/diffusers_state.pt --extra-kwargs {\"return_dict\":false} --shape 1 16 16
  --schedule ddpm-discrete --beta-schedule sigmoid --beta-start 1e-4 --beta-end 0.02 --prediction v" ""
case_ diffusers_cosine_v "--module $fam/diffusers_style_unet.py --class UNet2DModel
  --state-dict $work/diffusers_state.pt --shape 1 16 16 --schedule cosine --t-max 0.99 --time-scale 1000
  --prediction v" ""
case_ diffusers_vp_score "--module $fam/diffusers_style_unet.py --class UNet2DModel
  --state-dict $work/diffusers_state.pt --shape 1 16 16 --schedule vp-linear --time-scale 999
  --prediction score" ""
case_ diffusers_ou_sample "--module $fam/diffusers_style_unet.py --class UNet2DModel
  --state-dict $work/diffusers_state.pt --shape 1 16 16 --schedule ou --t-max 3 --time-scale 100
  --prediction sample" ""
case_ latent "--module $fam/latent.py --class LatentDenoiser --state-dict $work/latent/latent_state.pt
  --shape 4 7 7 --schedule ddpm-discrete --beta-schedule scaled_linear --beta-start 0.00085 --beta-end 0.012
  --num-train-steps 1000 --prediction epsilon --time-dtype long --decoder $work/latent/vae_decoder.pt
  --scale-factor 3.3139 --image-shape 1 28 28" "--reward $work/conv1.pt"
# Conditional models: forward(x, t, c), checked with conditions and classifier-free guidance.
case_ guided_class "--module $fam/learned_sigma_unet.py --class UNetModel --init-kwargs {\"num_classes\":11}
  --state-dict $work/class_state.pt --shape 3 16 16 --schedule ddpm-discrete --beta-schedule squaredcos_cap_v2
  --num-train-steps 1000 --prediction epsilon --output-channels 6 --time-dtype long
  --condition class --num-classes 10" "--classes 0 1 2 --guidance 3"
case_ diffusers_class_cosine_v "--module $fam/diffusers_style_unet.py --class UNet2DModel
  --init-kwargs {\"num_class_embeds\":11} --state-dict $work/diffusers_class_state.pt --shape 1 16 16
  --schedule cosine --t-max 0.99 --time-scale 1000 --prediction v
  --condition class --num-classes 10 --null-class 10 --condition-arg class_labels" \
  "--guidance 1.5 --reward $work/conv1.pt"
case_ cross_attention_text "--module $fam/cross_attention_unet.py --class UNet2DConditionModel
  --state-dict $work/text_state.pt --shape 3 16 16 --schedule ddpm-discrete --beta-schedule scaled_linear
  --beta-start 0.00085 --beta-end 0.012 --num-train-steps 1000 --prediction epsilon --time-dtype long
  --condition tensor --condition-shape 4 8 --null-condition $work/empty_prompt.pt" "--guidance 2"

printf '%s\n' "${results[@]}"
echo "logs in $work"
exit $failed
