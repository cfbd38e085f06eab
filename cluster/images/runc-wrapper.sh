#!/bin/sh
# containerd's runc runtime points here on machines without CAP_SYS_RESOURCE: the kubelet asks
# for a negative oom_score_adj (-998) that such a machine cannot set, which makes runc fail
# every sandbox. On `create`, clamp a negative process.oomScoreAdj in the bundle to 0.
bundle=""
prev=""
for a in "$@"; do
    case "$prev" in --bundle|-b) bundle="$a" ;; esac
    case "$a" in --bundle=*) bundle="${a#--bundle=}" ;; esac
    prev="$a"
done
case " $* " in
*" create "*)
    cfg="${bundle:-.}/config.json"
    if [ -f "$cfg" ] && grep -q '"oomScoreAdj":-' "$cfg"; then
        sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$cfg"
    fi
    ;;
esac
exec /usr/sbin/runc "$@"
