#!/bin/sh
# Slurm's EpilogSlurmctld for Kiln: tells kilnd that a Slurm job ended, within
# milliseconds, so kilnd never polls Slurm per job. kilnd then asks slurmrestd
# for the job's final state (this hook's word is only a wake-up).
#
#   slurm-epilog.sh HOOKS_FILE
#
# HOOKS_FILE has one line per kilnd that uses this cluster, "URL POOL TOKEN_FILE":
# kilnd's API URL, the Slurm pool's name in its config, and the file holding the
# pool's hook token (pools[].slurm.hook_token_file; readable by SlurmUser only).
# Jobs not named kiln.* are not Kiln's and are skipped.
hooks=${1:?usage: slurm-epilog.sh HOOKS_FILE}
case "${SLURM_JOB_NAME:-kiln.}" in kiln.*) ;; *) exit 0 ;; esac
[ -r "$hooks" ] || exit 0
case "$SLURM_JOB_ID" in '' | *[!0-9]*) exit 0 ;; esac
# One at a time, in the foreground: slurmctld runs this hook with SIGCHLD
# blocked, so a shell's `wait` for background jobs would never return (and the
# job would stay COMPLETING). The job is COMPLETING while this runs; kilnd reads
# the instances' own status files, and asks Slurm again once it is done.
while read -r url pool token_file; do
  case "$url" in '' | \#*) continue ;; esac
  # The token goes in a header read from stdin: never on a command line (ps).
  printf 'Authorization: Bearer %s\n' "$(cat "$token_file")" |
    curl -sS -m 2 --retry 2 --retry-connrefused --retry-max-time 4 -o /dev/null -H @- \
      -H 'Content-Type: application/json' -d "{\"job_id\":$SLURM_JOB_ID}" "$url/v1/pools/$pool/slurm-events"
done < "$hooks"
exit 0
