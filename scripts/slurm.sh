#!/usr/bin/env bash
# A real single-host Slurm 22.05 cluster (munge, slurmctld, one slurmd per node,
# slurmrestd with JWT) from Debian's packages, in a private directory: nothing
# goes in /etc/slurm. For Kiln's Slurm backend, its tests and benchmarks.
# Debian's build runs several slurmd on one host (slurmd -N): KILN_SLURM_NODES
# (default 2) nodes n1..nN, so a 2-instance job really spans two nodes.
# EpilogSlurmctld is DIR/epilog.sh: scripts/slurm-epilog.sh with DIR/kiln-hooks,
# where each kilnd that uses the cluster is a line "URL POOL TOKEN_FILE".
#
#   scripts/slurm.sh start DIR [BASE_PORT]   generate DIR/slurm.conf and start; BASE_PORT
#                                            (default 6817): slurmctld, +1 slurmd, +3 slurmrestd
#   scripts/slurm.sh stop DIR                stop what start started (munged is shared: left running)
#   scripts/slurm.sh stop-rest DIR           stop only slurmrestd (tests: Slurm's API unreachable)
#   scripts/slurm.sh start-rest DIR          start slurmrestd again
#
# After start, DIR/env holds SLURM_CONF, KILN_SLURM_URL (slurmrestd, on 127.0.0.1)
# and KILN_SLURM_JWT_KEY (the HS256 key slurmctld verifies tokens with; kilnd
# mints its own tokens from it). The scheduler is tuned for latency and
# throughput as in ../shared/reference/local-components.md.
set -euo pipefail

cmd=${1:?usage: slurm.sh start|stop DIR [BASE_PORT]}
D=${2:?usage: slurm.sh start|stop DIR [BASE_PORT]}
BASE=${3:-6817}

stop() {
  local f
  for f in "$D"/slurmrestd.pid "$D"/slurmd*.pid "$D"/slurmctld.pid; do
    if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  for f in "$D"/slurmrestd.pid "$D"/slurmd*.pid "$D"/slurmctld.pid; do
    if [ -f "$f" ]; then
      for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    fi
  done
}

start_rest() {
  # slurmrestd refuses to run as root: it drops to the slurm user after binding.
  local rest=$1
  SLURM_JWT=daemon setsid slurmrestd -f "$D/slurm.conf" -u slurm -a rest_auth/jwt -s openapi/v0.0.38 "$rest" \
    >> "$D/slurmrestd.log" 2>&1 < /dev/null &
  echo $! > "$D/slurmrestd.pid"
  for _ in $(seq 100); do curl -s -o /dev/null "http://$rest/" && return 0; sleep 0.05; done
  echo "slurm.sh: slurmrestd did not start; see $D/slurmrestd.log" >&2
  return 1
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi
if [ "$cmd" = stop-rest ]; then
  if [ -f "$D/slurmrestd.pid" ]; then
    kill "$(cat "$D/slurmrestd.pid")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$D/slurmrestd.pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$D/slurmrestd.pid"
  fi
  exit 0
fi
if [ "$cmd" = start-rest ]; then
  start_rest "$(sed -n 's|^KILN_SLURM_URL=http://||p' "$D/env")"
  exit $?
fi
[ "$cmd" = start ] || { echo "slurm.sh: unknown command $cmd" >&2; exit 2; }

for b in slurmctld slurmd slurmrestd munged scontrol sinfo; do
  command -v "$b" >/dev/null || { echo "slurm.sh: $b missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
[ -f /usr/lib/x86_64-linux-gnu/slurm-wlm/auth_jwt.so ] || [ -n "$(find /usr/lib -name auth_jwt.so 2>/dev/null | head -1)" ] ||
  { echo "slurm.sh: auth_jwt.so missing (package slurm-wlm-jwt-plugin)" >&2; exit 1; }

NODES=${KILN_SLURM_NODES:-2}
mkdir -p "$D/state" "$D/jobs"
for i in $(seq "$NODES"); do mkdir -p "$D/spool/n$i"; done
chmod 755 "$D"
D=$(cd "$D" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$(( ${MEM:-4096} > 1024 ? ${MEM:-4096} - 512 : ${MEM:-4096} ))
MEM=$(( MEM / NODES ))
NODE_LINES=""
for i in $(seq "$NODES"); do
  NODE_LINES="${NODE_LINES}NodeName=n$i NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((BASE + 9 + i)) CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
"
done
printf '#!/bin/sh\nexec "%s/slurm-epilog.sh" "%s/kiln-hooks"\n' "$HERE" "$D" > "$D/epilog.sh"
chmod 755 "$D/epilog.sh"
touch "$D/kiln-hooks"

# munge: shared by every cluster on the host; started once, as its own user.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  install -d -o munge -g munge /run/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 100); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.05; done
fi

[ -f "$D/jwt_hs256.key" ] || { head -c 32 /dev/urandom > "$D/jwt_hs256.key"; chmod 600 "$D/jwt_hs256.key"; }
cat > "$D/slurm.conf" <<EOF
ClusterName=kiln
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$BASE
SlurmdPort=$((BASE + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$D/jwt_hs256.key
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd-%n.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd-%n.log
EpilogSlurmctld=$D/epilog.sh
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/jobcomp.log
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
${NODE_LINES}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:32
EOF
chmod 644 "$D/slurm.conf"
export SLURM_CONF=$D/slurm.conf

stop  # a previous run's daemons in this directory
slurmctld -f "$SLURM_CONF"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.05; done
for i in $(seq "$NODES"); do slurmd -N "n$i" -f "$SLURM_CONF"; done
idle() { [ "$(sinfo -h -t idle -o %D 2>/dev/null | head -1)" = "$NODES" ]; }
for _ in $(seq 200); do idle && break; sleep 0.05; done
idle || { echo "slurm.sh: the nodes did not come up; see $D/slurmd-n*.log" >&2; exit 1; }

REST=127.0.0.1:$((BASE + 3))
: > "$D/slurmrestd.log"
start_rest "$REST"

cat > "$D/env" <<EOF
SLURM_CONF=$D/slurm.conf
KILN_SLURM_URL=http://$REST
KILN_SLURM_JWT_KEY=$D/jwt_hs256.key
EOF
echo "slurm.sh: up in $D (slurmrestd on $REST)"
