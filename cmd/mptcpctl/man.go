package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

//go:generate go run . gen-man ../../docs/man

// manDate is the date the man pages carry. It is fixed, so that the same
// command tree always gives the same pages; move it forward with a
// release.
func manDate() time.Time { return time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC) }

// manGlob matches the pages gen-man writes.
const manGlob = "mptcpctl*.1"

func (a *app) genManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages of mptcpctl into DIR",
		Hidden: true,
		Long: `gen-man writes a man page for mptcpctl and each of its commands into DIR,
replacing the pages it wrote before. go generate runs it for docs/man.`,
		Args: exactArgs(1, "one DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genMan(cmd.Root(), args[0])
		},
	}
}

// genMan writes the pages of the tree under root into dir.
func genMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making the man page directory: %w", err)
	}
	old, err := filepath.Glob(filepath.Join(dir, manGlob))
	if err != nil {
		return fmt.Errorf("finding old man pages: %w", err)
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("removing the old man page: %w", err)
		}
	}
	date := manDate()
	header := &doc.GenManHeader{
		Section: "1",
		Date:    &date,
		Source:  "mptcpd",
		Manual:  "mptcpd manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("writing man pages into %s: %w", dir, err)
	}
	return nil
}
