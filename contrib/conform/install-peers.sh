#!/usr/bin/env bash
# Installs two binary-protocol APNs clients nobody here wrote, from the package
# registries, for `apns-legacy conform run` (not run by the test suite):
#
#   - apns-client 0.2.1 (PyPI, June 2014, its last release) in a virtual environment,
#     with pyOpenSSL 23.2 / cryptography 41: apns-client mutates its SSL context per
#     connection, which pyOpenSSL 24.3+ forbids;
#   - apn 1.7.8 (npm, node-apn's last 1.x release, binary protocol) with its
#     dependencies, for node (tested with node 20).
#
# Usage: contrib/conform/install-peers.sh [DIR]   (default /tmp/apns-legacy-peers)
# Then, from the repository (with apns-legacy installed):
#   DIR=/tmp/apns-legacy-peers
#   apns-legacy conform run --agent apns-client-0.2.1 --out conform-report --exec \
#     "$DIR/py/bin/python contrib/conform/apns_client_wrapper.py {host} {port} {certs} {workload} {result}"
#   NODE_PATH=$DIR/node/node_modules apns-legacy conform run --agent node-apn-1.7.8 \
#     --out conform-report --exec \
#     "node contrib/conform/node_apn_wrapper.js {host} {port} {certs} {workload} {result}"
set -euo pipefail
DIR="${1:-/tmp/apns-legacy-peers}"
mkdir -p "$DIR"
python3 -m venv "$DIR/py"
"$DIR/py/bin/pip" install -q 'apns-client==0.2.1' 'pyOpenSSL==23.2.0' 'cryptography<42'
"$DIR/py/bin/python" -c 'import apnsclient, OpenSSL; print("apns-client", apnsclient.__version__ if hasattr(apnsclient, "__version__") else "0.2.1", "pyOpenSSL", OpenSSL.__version__)'
command -v node >/dev/null || { echo "node is not installed (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$DIR/node"
(cd "$DIR/node" && npm install --no-audit --no-fund --silent 'apn@1.7.8')
node -e 'console.log("apn", require(process.argv[1] + "/node/node_modules/apn/package.json").version)' "$DIR"
echo "peers installed in $DIR"
