// Renders hangwatch's Grafana notification templates with Go's text/template, on the data
// shape Grafana gives them (github.com/grafana/alerting templates.ExtendedData, built on
// Alertmanager's template.Data), and expands alert rule annotations the way Grafana's rule
// templating does ($labels, $values, $value). Standard library only: the templates use only
// text/template's own functions, so an unknown function fails to parse here as in Grafana.
//
// stdin: {"template": "...", "execute": ["name", ...], "data": {...}, "annotations": {...}}
// stdout: {"rendered": {"name": "text", ...}, "alerts": [annotations after expansion, ...]}
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"
)

// KV is Alertmanager's template.KV: label and annotation maps.
type KV map[string]string

// ExtendedAlert mirrors github.com/grafana/alerting/templates.ExtendedAlert.
type ExtendedAlert struct {
	Status       string             `json:"status"`
	Labels       KV                 `json:"labels"`
	Annotations  KV                 `json:"annotations"`
	StartsAt     time.Time          `json:"startsAt"`
	EndsAt       time.Time          `json:"endsAt"`
	GeneratorURL string             `json:"generatorURL"`
	Fingerprint  string             `json:"fingerprint"`
	SilenceURL   string             `json:"silenceURL"`
	DashboardURL string             `json:"dashboardURL"`
	PanelURL     string             `json:"panelURL"`
	Values       map[string]float64 `json:"values"`
	ValueString  string             `json:"valueString"`
}

type ExtendedAlerts []ExtendedAlert

// Firing and Resolved are the methods Grafana's templates call as .Alerts.Firing / .Resolved.
func (as ExtendedAlerts) Firing() []ExtendedAlert   { return as.with("firing") }
func (as ExtendedAlerts) Resolved() []ExtendedAlert { return as.with("resolved") }

func (as ExtendedAlerts) with(status string) []ExtendedAlert {
	res := []ExtendedAlert{}
	for _, a := range as {
		if a.Status == status {
			res = append(res, a)
		}
	}
	return res
}

// ExtendedData mirrors github.com/grafana/alerting/templates.ExtendedData.
type ExtendedData struct {
	Receiver          string         `json:"receiver"`
	Status            string         `json:"status"`
	Alerts            ExtendedAlerts `json:"alerts"`
	GroupLabels       KV             `json:"groupLabels"`
	CommonLabels      KV             `json:"commonLabels"`
	CommonAnnotations KV             `json:"commonAnnotations"`
	ExternalURL       string         `json:"externalURL"`
	GroupKey          string         `json:"groupKey"`
}

type input struct {
	Template    string            `json:"template"`
	Execute     []string          `json:"execute"`
	Data        ExtendedData      `json:"data"`
	Annotations map[string]string `json:"annotations"`
}

// templateValue is one entry of $values in Grafana's rule templating: a query or
// expression's labels and value (pkg/services/ngalert/state/template).
type templateValue struct {
	Labels map[string]string
	Value  float64
}

// ruleData is what Grafana's rule templating executes annotations on.
type ruleData struct {
	Labels map[string]string
	Values map[string]templateValue
	Value  string
}

// Grafana prepends these to every annotation template (pkg/services/ngalert/state/template).
const rulePrefix = "{{- $labels := .Labels -}}{{- $values := .Values -}}{{- $value := .Value -}}"

func expandAnnotation(text string, a ExtendedAlert) (string, error) {
	t, err := template.New("annotation").Option("missingkey=zero").Parse(rulePrefix + text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	values := map[string]templateValue{}
	for ref, v := range a.Values {
		values[ref] = templateValue{Labels: a.Labels, Value: v}
	}
	if err := t.Execute(&b, ruleData{Labels: a.Labels, Values: values, Value: a.ValueString}); err != nil {
		return "", err
	}
	return b.String(), nil
}

func commonAnnotations(alerts ExtendedAlerts) KV {
	out := KV{}
	if len(alerts) == 0 {
		return out
	}
	for k, v := range alerts[0].Annotations {
		same := true
		for _, a := range alerts[1:] {
			if a.Annotations[k] != v {
				same = false
			}
		}
		if same {
			out[k] = v
		}
	}
	return out
}

func run() error {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	expanded := []KV{}
	for i := range in.Data.Alerts {
		a := &in.Data.Alerts[i]
		if a.Annotations == nil {
			a.Annotations = KV{}
		}
		for k, text := range in.Annotations {
			v, err := expandAnnotation(text, *a)
			if err != nil {
				return fmt.Errorf("annotation %s: %w", k, err)
			}
			a.Annotations[k] = v
		}
		expanded = append(expanded, a.Annotations)
	}
	in.Data.CommonAnnotations = commonAnnotations(in.Data.Alerts)
	// Alertmanager's template.New: missing map keys give the zero value.
	t, err := template.New("").Option("missingkey=zero").Parse(in.Template)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	rendered := map[string]string{}
	for _, name := range in.Execute {
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, name, in.Data); err != nil {
			return fmt.Errorf("execute %s: %w", name, err)
		}
		rendered[name] = b.String()
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"rendered": rendered, "alerts": expanded})
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
