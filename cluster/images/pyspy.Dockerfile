# The py-spy sidecar for kind (`make image CLUSTER=kind`): busybox and the py-spy binary from
# the PyPI wheel, which is a static-pie executable and runs in busybox as it is. triage adds it
# beside a Python operator that has no py-spy (shareProcessNamespace, SYS_PTRACE).
FROM python:3.11-slim AS wheel
RUN pip download --no-cache-dir --no-deps --only-binary=:all: -d /w "py-spy>=0.3.14" \
 && python -c "import glob, zipfile; z = zipfile.ZipFile(glob.glob('/w/py_spy-*.whl')[0]); m = [n for n in z.namelist() if n.endswith('.data/scripts/py-spy')][0]; open('/py-spy', 'wb').write(z.read(m))" \
 && chmod 0755 /py-spy

FROM busybox:1.36
COPY --from=wheel /py-spy /usr/local/bin/py-spy
ENTRYPOINT ["sleep", "2147483647"]
