#!/bin/sh
# Install runnerd as a systemd service on a VM or GPU host.
#
#   sudo infra/systemd/install.sh [--dry-run] [--cluster C] [--gpus SPEC] [PATH/TO/runnerd]
#
# Safe to run again (upgrades): it creates the user "runfleet" and
# /etc/runfleet if missing, installs the runnerd binary (the one given, else
# built with `go install github.com/runfleet/runfleet/cmd/runnerd@$RUNFLEET_VERSION`,
# default latest) as /usr/local/bin/runnerd, writes /etc/runfleet/runnerd.env
# (mode 0600) only if it does not exist, installs runnerd.service and enables
# it. It never starts or restarts the service: edit the environment file,
# then `systemctl start runnerd` (or `systemctl restart runnerd` to run a new
# binary; running tasks get the grace period).
#
# --dry-run prints what it would do and changes nothing. DESTDIR installs
# into another root (packaging, tests): no user is created and systemctl is
# not run.
set -eu

usage() {
	echo "usage: $0 [--dry-run] [--cluster C] [--gpus all|N|0,2] [path/to/runnerd]" >&2
	exit 2
}

dry=0
cluster=default
gpus=
binary=
while [ $# -gt 0 ]; do
	case $1 in
	--dry-run) dry=1 ;;
	--cluster)
		[ $# -ge 2 ] || usage
		cluster=$2
		shift
		;;
	--cluster=*) cluster=${1#--cluster=} ;;
	--gpus)
		[ $# -ge 2 ] || usage
		gpus=$2
		shift
		;;
	--gpus=*) gpus=${1#--gpus=} ;;
	-h | --help) usage ;;
	-*)
		echo "$0: unknown option $1" >&2
		usage
		;;
	*)
		[ -z "$binary" ] || usage
		binary=$1
		;;
	esac
	shift
done

case $cluster in
'' | *[!a-z0-9-]* | -*)
	echo "$0: --cluster \"$cluster\" is not a cluster slug: use lowercase letters, digits and dashes" >&2
	exit 2
	;;
esac
case $gpus in
*[!a-z0-9,=]*)
	echo "$0: --gpus \"$gpus\": want all, a count N or indexes 0,2" >&2
	exit 2
	;;
esac

here=$(cd "$(dirname "$0")" && pwd)
unit_src=$here/runnerd.service
destdir=${DESTDIR:-}
bin_dst=$destdir/usr/local/bin/runnerd
conf_dir=$destdir/etc/runfleet
env_file=$conf_dir/runnerd.env
unit_dst=$destdir/etc/systemd/system/runnerd.service

if [ ! -f "$unit_src" ]; then
	echo "$0: $unit_src is missing: run the script from its directory in the runfleet source" >&2
	exit 1
fi
if [ -n "$binary" ] && [ ! -x "$binary" ]; then
	echo "$0: $binary is not an executable file" >&2
	exit 1
fi
if [ "$dry" = 0 ] && [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
	echo "$0: run as root (sudo), or with --dry-run to see what it would do" >&2
	exit 1
fi

# step describes an action and runs it, or only describes it with --dry-run.
step() {
	if [ "$dry" = 1 ]; then
		echo "would run: $*"
	else
		echo "+ $*"
		"$@"
	fi
}

# 1. The service user, without a login shell or home of its own.
if [ -n "$destdir" ]; then
	echo "skip: user runfleet (DESTDIR set)"
elif id runfleet >/dev/null 2>&1; then
	echo "ok: user runfleet exists"
else
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	step useradd --system --user-group --home-dir /var/lib/runfleet --no-create-home \
		--shell "$nologin" --comment "runfleet runnerd" runfleet
fi

# 2. The binary.
if [ -z "$binary" ]; then
	version=${RUNFLEET_VERSION:-latest}
	if [ "$dry" = 1 ]; then
		echo "would run: go install github.com/runfleet/runfleet/cmd/runnerd@$version (into a temporary GOBIN)"
		binary="(the runnerd built by go install)"
	else
		command -v go >/dev/null 2>&1 || {
			echo "$0: no runnerd binary given and go is not installed: pass the path of a runnerd binary" >&2
			exit 1
		}
		gobin=$(mktemp -d)
		trap 'rm -rf "$gobin"' EXIT
		step env GOBIN="$gobin" CGO_ENABLED=0 go install "github.com/runfleet/runfleet/cmd/runnerd@$version"
		binary=$gobin/runnerd
	fi
fi
if [ -f "$bin_dst" ] && cmp -s "$binary" "$bin_dst"; then
	echo "ok: $bin_dst is up to date"
else
	step install -D -m 0755 "$binary" "$bin_dst"
fi

# 3. The configuration directory and environment file. The file holds
# secrets: root-only, and never overwritten once it exists.
if [ -d "$conf_dir" ]; then
	echo "ok: $conf_dir exists"
else
	step install -d -m 0755 "$conf_dir"
fi
if [ -e "$env_file" ]; then
	echo "ok: $env_file exists; left as it is"
elif [ "$dry" = 1 ]; then
	echo "would write: $env_file (mode 0600, cluster $cluster${gpus:+, --gpus $gpus})"
else
	echo "+ write $env_file (mode 0600)"
	args=
	[ -z "$gpus" ] || args="--gpus $gpus"
	(
		umask 077
		cat >"$env_file" <<EOF
# runnerd settings, read by systemd for runnerd.service. Root-only (0600):
# it holds the Redis password and S3 keys. Apply changes with:
#   systemctl restart runnerd

# The cluster this host serves (create it once: runfleet cluster create NAME).
RUNFLEET_CLUSTER=$cluster
# More runnerd flags, split on spaces: --gpus all|N|0,2, -n 2,
# --concurrency 4, --trusted-key /etc/runfleet/release.pub, --verbose.
RUNNERD_ARGS=$args

# Redis: redis://[user:password@]host:6379/0, or rediss:// for TLS.
RUNFLEET_REDIS_URL=redis://127.0.0.1:6379/0
# The release store, as `runfleet infra outputs` prints it (s3://BUCKET;
# releases live under its releases/), or file:///dir.
RUNFLEET_STORE=s3://runfleet

# S3 credentials and endpoint; leave out on EC2 with an instance role.
#AWS_REGION=us-east-1
#AWS_ACCESS_KEY_ID=
#AWS_SECRET_ACCESS_KEY=
#AWS_ENDPOINT_URL_S3=http://minio.internal:9000
EOF
	)
	chmod 0600 "$env_file"
fi

# 4. The unit.
if [ -f "$unit_dst" ] && cmp -s "$unit_src" "$unit_dst"; then
	echo "ok: $unit_dst is up to date"
else
	step install -D -m 0644 "$unit_src" "$unit_dst"
fi

# 5. Enable it (start it once the environment file is filled in).
if [ -n "$destdir" ]; then
	echo "skip: systemctl daemon-reload and enable (DESTDIR set)"
else
	step systemctl daemon-reload
	step systemctl enable runnerd.service
fi
echo "next: edit $env_file, then: systemctl start runnerd; journalctl -u runnerd -f"
