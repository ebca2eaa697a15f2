package peerbench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// CommandStat is one command's line of INFO commandstats, or one function's
// or script's total from SLOWLOG.
type CommandStat struct {
	Name  string `json:"name"`
	Calls int64  `json:"calls"`
	Usec  int64  `json:"usec"`
}

// redisCPU reads INFO cpu: the server's user plus system CPU time so far.
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("read INFO cpu: %w", err)
	}
	return parseCPU(info)
}

// parseCPU adds used_cpu_user and used_cpu_sys (seconds, six decimals) of
// an INFO cpu reply.
func parseCPU(info string) (time.Duration, error) {
	var total time.Duration
	found := 0
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || (k != "used_cpu_user" && k != "used_cpu_sys") {
			continue
		}
		s, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("parse INFO cpu %s=%q: %w", k, v, err)
		}
		total += time.Duration(s * float64(time.Second))
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("INFO cpu has no used_cpu_user and used_cpu_sys: %q", info)
	}
	return total, nil
}

// commandStats reads INFO commandstats, most expensive first.
func commandStats(ctx context.Context, rdb *redis.Client) ([]CommandStat, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("read INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// parseCommandStats parses lines such as
//
//	cmdstat_fcall:calls=10,usec=200,usec_per_call=20.00,rejected_calls=0,failed_calls=0
//
// and sorts them by usec, then name.
func parseCommandStats(info string) ([]CommandStat, error) {
	var out []CommandStat
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		st := CommandStat{Name: strings.TrimPrefix(name, "cmdstat_")}
		for _, f := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(f, "=")
			var err error
			switch k {
			case "calls":
				st.Calls, err = strconv.ParseInt(v, 10, 64)
			case "usec":
				st.Usec, err = strconv.ParseInt(v, 10, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("parse commandstats line %q: %w", line, err)
			}
		}
		out = append(out, st)
	}
	sortByCost(out)
	return out, nil
}

func sortByCost(s []CommandStat) {
	slices.SortFunc(s, func(a, b CommandStat) int {
		return cmp.Or(cmp.Compare(b.Usec, a.Usec), strings.Compare(a.Name, b.Name))
	})
}

// asynqScripts names asynq v0.26.0's Lua scripts by the SHA-1 that EVALSHA
// sends (computed from the scripts in its internal/rdb/rdb.go). A script not
// listed shows as "evalsha <first 8 hex digits>".
var asynqScripts = map[string]string{
	"98d28b42650870a743450ffda9791e9e19c6991b": "enqueue",
	"297b3f9abfd963a3316434ef9d88fc5bf8a7ddc3": "enqueueUnique",
	"a8153319360adc71cdc370107f8ab9786f204765": "dequeue",
	"1241eaa1c73409baaf1fea0c08d203a4911bda15": "done",
	"a2631c71357a54b4c3e7450b1757e7f3f49d6c81": "doneUnique",
	"117dca952700588e559c7ace20b925096d587974": "markAsComplete",
	"ce6833ccce362a8c0ee53beee413341daf52e39c": "markAsCompleteUnique",
	"f34cbfd11d1fc8019af55b50c447fc68eb8b29e5": "requeue",
	"8ce6b38a99b73194585c251eb3c2a89559f37a87": "schedule",
	"65fa409c88198a681c53e0892d8276eca0145694": "retry",
	"9c3b1eb9947ce2ee5304ac013a0a365ec364fd2d": "archive",
	"522b1a6ae66fe79ea2f24a9af58798ab71879035": "forward",
	"a3812898e6caa8ef58d4cda34cd41a1023157e43": "aggregationCheck",
	"7c08714194a1ed81153180b36590c51f1ccd7d42": "reclaimStateAggregationSets",
	"49c4326d80c1db9c476da2aa7f4438d03688f82b": "deleteExpiredCompletedTasks",
	"16988a462595f6ee317be300951533b004f27f5c": "listLeaseExpired",
	"3c8548ad44d0dfcfde50f07ea9271d77f656042c": "writeServerState",
	"79cf8dbc80deca37314fdfdeb9fe33a12c9baad7": "clearServerState",
}

// commandLabel names a logged command for the per-function table: the
// function an FCALL calls ("fcall rf_claim"), the asynq script an EVALSHA
// runs ("evalsha dequeue"), else the command's name in lower case.
func commandLabel(args []string) string {
	if len(args) == 0 {
		return "?"
	}
	cmd := strings.ToLower(args[0])
	switch cmd {
	case "fcall", "fcall_ro":
		if len(args) > 1 {
			return cmd + " " + args[1]
		}
	case "evalsha", "evalsha_ro":
		if len(args) > 1 {
			if name, ok := asynqScripts[strings.ToLower(args[1])]; ok {
				return cmd + " " + name
			}
			return cmd + " " + args[1][:min(8, len(args[1]))]
		}
	}
	return cmd
}

// nestedAddr is the client address SLOWLOG records for a command that a
// function or script called (Redis runs them from a fake client).
const nestedAddr = "?:0"

// functionCosts adds up SLOWLOG entries (newest first, as SLOWLOG GET
// returns them) by commandLabel, most expensive first, leaving out those of
// the client named skipClient (the meter's own commands). top holds the
// commands clients sent; a function's or script's time includes what it
// called. inside holds those called commands, labelled "<caller>: <command>":
// Redis is single-threaded, so the commands a script calls are logged right
// before the script itself.
func functionCosts(logs []redis.SlowLog, skipClient string) (top, inside []CommandStat) {
	tops, ins := map[string]*CommandStat{}, map[string]*CommandStat{}
	add := func(m map[string]*CommandStat, label string, d time.Duration) {
		st := m[label]
		if st == nil {
			st = &CommandStat{Name: label}
			m[label] = st
		}
		st.Calls++
		st.Usec += d.Microseconds()
	}
	var nested []redis.SlowLog
	for i := len(logs) - 1; i >= 0; i-- {
		l := logs[i]
		if l.ClientAddr == nestedAddr {
			nested = append(nested, l)
			continue
		}
		label := commandLabel(l.Args)
		for _, n := range nested {
			add(ins, label+": "+commandLabel(n.Args), n.Duration)
		}
		nested = nested[:0]
		if skipClient == "" || l.ClientName != skipClient {
			add(tops, label, l.Duration)
		}
	}
	flat := func(m map[string]*CommandStat) []CommandStat {
		out := make([]CommandStat, 0, len(m))
		for _, st := range m {
			out = append(out, *st)
		}
		sortByCost(out)
		return out
	}
	return flat(tops), flat(ins)
}

// processCPU is this process's user plus system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
