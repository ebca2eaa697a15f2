package peerbench

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestParseCPUAddsUserAndSys(t *testing.T) {
	t.Parallel()
	d, err := parseCPU("# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250001\r\nused_cpu_sys_children:9.000000\r\n")
	require.NoError(t, err)
	require.Equal(t, 3750001*time.Microsecond, d)

	_, err = parseCPU("# CPU\r\nused_cpu_sys:1.5\r\n")
	require.ErrorContains(t, err, "used_cpu_user")
}

func TestParseCommandStatsSortsByTime(t *testing.T) {
	t.Parallel()
	s, err := parseCommandStats("# Commandstats\r\n" +
		"cmdstat_hset:calls=30,usec=90,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_fcall:calls=10,usec=200,usec_per_call=20.00,rejected_calls=0,failed_calls=1\r\n")
	require.NoError(t, err)
	require.Equal(t, []CommandStat{{"fcall", 10, 200}, {"hset", 30, 90}}, s)
}

func TestCommandLabelNamesFunctionsAndScripts(t *testing.T) {
	t.Parallel()
	require.Equal(t, "fcall rf_claim", commandLabel([]string{"FCALL", "rf_claim", "1", "k"}))
	require.Equal(t, "evalsha dequeue", commandLabel([]string{"evalsha", "a8153319360adc71cdc370107f8ab9786f204765", "4"}))
	require.Equal(t, "evalsha 01234567", commandLabel([]string{"evalsha", "0123456789abcdef0123456789abcdef01234567"}))
	require.Equal(t, "xreadgroup", commandLabel([]string{"XREADGROUP", "GROUP"}))
}

// SLOWLOG lists the commands a script called (from client "?:0") right
// before the script: they count inside it, not again on their own.
func TestFunctionCostsAttributesNestedCommandsToTheirScript(t *testing.T) {
	t.Parallel()
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	logs := []redis.SlowLog{ // newest first, as SLOWLOG GET returns them
		{ID: 6, Duration: us(1), Args: []string{"info"}, ClientAddr: "127.0.0.1:2", ClientName: "meter"},
		{ID: 5, Duration: us(3), Args: []string{"xack"}, ClientAddr: "127.0.0.1:1"},
		{ID: 4, Duration: us(20), Args: []string{"fcall", "rf_claim"}, ClientAddr: "127.0.0.1:1"},
		{ID: 3, Duration: us(5), Args: []string{"hset"}, ClientAddr: "?:0"},
		{ID: 2, Duration: us(4), Args: []string{"hset"}, ClientAddr: "?:0"},
		{ID: 1, Duration: us(2), Args: []string{"hset"}, ClientAddr: "127.0.0.1:1"},
	}
	top, inside := functionCosts(logs, "meter")
	require.Equal(t, []CommandStat{{"fcall rf_claim", 1, 20}, {"xack", 1, 3}, {"hset", 1, 2}}, top)
	require.Equal(t, []CommandStat{{"fcall rf_claim: hset", 2, 9}}, inside)
}
