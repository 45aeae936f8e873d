// Command grafana checks tickflow's Grafana dashboards with Grafana's own code, since no Grafana
// server runs on the test machines (tests/dashboards.rs runs it):
//
//	grafana validate FILE...   each dashboard decoded strictly (unknown or mistyped fields are
//	                           errors) and validated by the Grafana Foundation SDK
//	grafana expand < JOB       each query's SQL macros expanded by the code path of the DuckDB
//	                           datasource's backend: sqlutil.Interpolate with DefaultMacros
//
// JOB is {"from": RFC3339, "to": RFC3339, "queries": {NAME: SQL}}; the answer is
// {NAME: {"sql": EXPANDED}} or {NAME: {"error": MESSAGE}}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data/sqlutil"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: grafana validate FILE... | grafana expand < JOB")
	}
	switch os.Args[1] {
	case "validate":
		validate(os.Args[2:])
	case "expand":
		expand()
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(2)
}

func validate(files []string) {
	plugins.RegisterDefaultPlugins()
	bad := false
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			fail(err.Error())
		}
		var d dashboard.Dashboard
		if err := real(d.UnmarshalJSONStrict(raw)); err != nil {
			fmt.Printf("%s: decoding: %v\n", f, err)
			bad = true
			continue
		}
		if err := real(d.Validate()); err != nil {
			fmt.Printf("%s: invalid: %v\n", f, err)
			bad = true
			continue
		}
		fmt.Printf("%s: valid (%d panels)\n", f, len(d.Panels))
	}
	if bad {
		os.Exit(1)
	}
}

// real is err unless it is an empty cog.BuildErrors (the SDK returns its typed nil slice as a
// non-nil error when nothing failed).
func real(err error) error {
	if errs, ok := err.(cog.BuildErrors); ok && len(errs) == 0 {
		return nil
	}
	return err
}

type job struct {
	From    time.Time         `json:"from"`
	To      time.Time         `json:"to"`
	Queries map[string]string `json:"queries"`
}

type result struct {
	SQL   string `json:"sql,omitempty"`
	Error string `json:"error,omitempty"`
}

func expand() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err.Error())
	}
	var j job
	if err := json.Unmarshal(raw, &j); err != nil {
		fail("the job: " + err.Error())
	}
	out := map[string]result{}
	for name, sql := range j.Queries {
		q := &sqlutil.Query{
			RawSQL:    sql,
			RefID:     name,
			Interval:  time.Minute,
			TimeRange: backend.TimeRange{From: j.From, To: j.To},
		}
		expanded, err := sqlutil.Interpolate(q, sqlutil.DefaultMacros)
		if err != nil {
			out[name] = result{Error: err.Error()}
		} else {
			out[name] = result{SQL: expanded}
		}
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fail(err.Error())
	}
}
