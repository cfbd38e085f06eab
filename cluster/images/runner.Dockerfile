# The runner stand-in for kind (`make image CLUSTER=kind`): the same script the local node's
# busybox image runs (cluster/images/runner.sh), so burst latency measures pod start-up, not
# a multi-gigabyte pull of the real runner image.
FROM busybox:1.36
COPY cluster/images/runner.sh /runner.sh
ENTRYPOINT ["/bin/sh", "/runner.sh"]
