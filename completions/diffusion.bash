# bash completion for diffusion(1), diffusion.c. Installed as
# share/bash-completion/completions/diffusion; to try it from the source tree:
#   source completions/diffusion.bash
# Commands are completed, then each command's options, read from `diffusion COMMAND --help` (so
# they stay those of the installed binary), and the values of options that take names.

_diffusion_options() { # _diffusion_options CMD...: "--opt" per line, "--opt=" for those with a value
    local help
    help=$("${_diffusion_bin:-diffusion}" "$@" --help 2> /dev/null) || return
    # "  --name VALUE   text" takes a value; "  --name   text" is a flag
    sed -n -E 's/^  (--[a-z0-9-]+) [A-Za-z|]+[^ ]* .*/\1=/p; s/^  (--[a-z0-9-]+)( {2,}.*|$)/\1/p' \
        <<< "$help"
}

_diffusion() {
    local cur prev words cword
    if declare -F _init_completion > /dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi
    _diffusion_bin=${words[0]}
    local commands="train sample eval demo bench train-classifier"

    if [ "$cword" -eq 1 ]; then
        mapfile -t COMPREPLY < <(compgen -W "$commands --help --version" -- "$cur")
        return
    fi
    local cmd=("${words[1]}")
    [ "${words[1]}" = bench ] && [ "${words[2]:-}" = unet ] && cmd=(bench unet)
    if [ "${words[1]}" = bench ] && [ "$cword" -eq 2 ] && [[ "$cur" != -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "mlp unet" -- "$cur")
        return
    fi

    # the value of the option before the cursor: names, and files unless the names are all
    local builtin="swissroll moons 8gaussians checkerboard rings spiral"
    local values="" closed=1
    case "$prev" in
        --data|--real-data)
            values="$builtin fashion-mnist fashion-mnist-test" ;;
        --test-data) values="fashion-mnist fashion-mnist-test" ;;
        --model)
            case "${words[1]}" in
                train) values="mlp unet-28 cifar-ddpm tiny" ;;
                train-classifier) values="classifier-28 classifier-tiny" ;;
                bench) values="unet-28 cifar-ddpm tiny" ;;
            esac ;;
        --schedule) values="linear cosine logsnr learned" ;;
        --prediction) values="epsilon x0 v score" ;;
        --loss) values="simple vlb vdm hybrid vdm-continuous" ;;
        --var)
            values="beta beta-tilde learned"
            [ "${words[1]}" != train ] && values="$values model" ;;
        --t-sampling) values="uniform importance" ;;
        --sampler) values="scheduler ancestral ddim langevin pc dpmpp-2m" ;;
        --samplers) values="ancestral,ddim,dpmpp-2m" ;;
        --metric) values="mmd nll steps accuracy fid prec-recall guidance" ;;
        --precision) values="fp32 bf16" ;;
        --likelihood) values="bound ode both" ;;
        --sde-sampler) values="euler-maruyama reverse-diffusion pc ode-euler ode-heun ode-rk4 ode-rk45" ;;
        --probe) values="rademacher gaussian" ;;
        --sde)
            values="vp"
            [ "${words[1]}" = train ] && values="vp subvp ve" ;;
        --conv) values="auto im2col" ;;
        --class) values="all" ;;
        --resume-from) # the numbered checkpoints of the --out folder given on the line
            local i out=""
            for ((i = 1; i < ${#words[@]} - 1; i++)); do
                [ "${words[i]}" = --out ] && out=${words[i + 1]}
            done
            [ -n "$out" ] && values=$(cd "$out" 2> /dev/null && ls -d checkpoint-* 2> /dev/null | grep -E '^checkpoint-[0-9]+$')
            closed=0 ;;
        *) closed=0 ;;
    esac
    case "$prev" in --data|--real-data|--test-data|--model) closed=0 ;; esac
    local opts
    opts=$(_diffusion_options "${cmd[@]}")
    if [[ "$cur" != -* ]] && grep -q -x -- "$prev=" <<< "$opts"; then
        COMPREPLY=()
        [ -n "$values" ] && mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
        [ "$closed" = 1 ] && return
        # files and folders (a data file, a checkpoint folder, an output)
        local files
        mapfile -t files < <(compgen -f -- "$cur")
        COMPREPLY+=("${files[@]}")
        compopt -o filenames 2> /dev/null
        return
    fi
    if [[ "$cur" == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(sed 's/=$//' <<< "$opts") --version" -- "$cur")
    fi
}
complete -F _diffusion diffusion
