#!/bin/bash
# LocalStack runs this once it is ready: deploy the runfleet stack into it
# and create the cluster the runner serves. Output goes to LocalStack's log
# (docker-compose logs localstack). A failed deploy leaves no marker, so the
# compose healthcheck fails and `localstack-up` says where to look.
set -euo pipefail

export AWS_ENDPOINT_URL=http://localhost:4566
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
stack="${RUNFLEET_STACK:-local}"
runfleet=/opt/runfleet/bin/runfleet

# The zips are built for both architectures; deploy the host's, since an
# arm64 bootstrap on an amd64 host runs only under qemu binfmt.
case "$(uname -m)" in
  aarch64|arm64) arch=arm64 ;;
  *) arch=x86_64 ;;
esac

echo "runfleet: deploying stack $stack ($arch) into LocalStack"
"$runfleet" infra deploy --target localstack --stack "$stack" \
  --file /opt/runfleet/stack.toml --arch "$arch"
"$runfleet" infra outputs --target localstack --stack "$stack" --file /opt/runfleet/stack.toml

cluster="${RUNFLEET_CLUSTER:-dev}"
if ! "$runfleet" cluster get "$cluster" >/dev/null 2>&1; then
  "$runfleet" cluster create "$cluster"
fi
touch /tmp/runfleet-deployed
echo "runfleet: stack $stack deployed; cluster $cluster ready"
