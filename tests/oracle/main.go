// Command mirrorlab-oracle answers questions about image pulls with the real libraries.
//
// It reads one JSON request per line on stdin and writes one JSON answer per line on
// stdout, so the Python tests start it once and keep it open. A request is an object with
// "op" (version, sources, policy, render, copy, verify) and the fields that operation reads; an
// answer always has "ok", and "error" (text) when the operation itself failed. An answer
// describing a refusal of the input (a bad registries.conf, a rejected image) is still
// ok: true, with the library's message in its own field.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"
)

type request struct {
	Op string `json:"op"`
	ID any    `json:"id,omitempty"`
	sourcesRequest
	policyRequest
	renderRequest
	copyRequest
	verifyRequest
}

type answer map[string]any

func handle(line []byte) (result answer) {
	defer func() {
		if p := recover(); p != nil {
			result = answer{"ok": false, "error": fmt.Sprintf("panic: %v", p)}
		}
	}()
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return answer{"ok": false, "error": "bad request: " + err.Error()}
	}
	var out answer
	var err error
	switch req.Op {
	case "version":
		out, err = versions()
	case "sources":
		out, err = sources(&req.sourcesRequest)
	case "policy":
		out, err = policy(&req.policyRequest, req.Refs)
	case "render":
		out, err = render(&req.renderRequest)
	case "copy":
		out, err = copyImage(&req.copyRequest)
	case "verify":
		out, err = verify(&req.verifyRequest)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		out = answer{"ok": false, "error": err.Error()}
	} else {
		out["ok"] = true
	}
	if req.ID != nil {
		out["id"] = req.ID
	}
	return out
}

func serve(in io.Reader, out io.Writer) error {
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	writer := bufio.NewWriter(out)
	encoder := json.NewEncoder(writer)
	encoder.SetEscapeHTML(false)
	for scanner.Scan() {
		if len(scanner.Bytes()) == 0 {
			continue
		}
		if err := encoder.Encode(handle(scanner.Bytes())); err != nil {
			return err
		}
		if err := writer.Flush(); err != nil {
			return err
		}
	}
	return scanner.Err()
}

func main() {
	logrus.SetOutput(io.Discard)
	if len(os.Args) > 1 && os.Args[1] == "version" {
		out, err := versions()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(out)
		return
	}
	if err := serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mirrorlab-oracle:", err)
		os.Exit(1)
	}
}
