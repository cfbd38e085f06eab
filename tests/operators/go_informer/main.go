// Command go-informer is a small AgenticSession controller on client-go's dynamic informers.
//
// It stands for the Go operators triage's users bring. Like the upstream ambient-code operator
// (controller-runtime with an unmodified cache) it keeps every AgenticSession it watches as a
// whole unstructured object in its informer cache, so its heap grows with the number of
// sessions, and it serves net/http/pprof the way the upstream reproducer's patch did:
// only when ENABLE_PPROF=true, and only on 127.0.0.1 (the port is a flag, so two pods that
// share a node's network do not collide).
//
// What it does with a session: a new session without status.phase is acknowledged (status
// phase Pending and a Reconciled condition with reason AcknowledgedByGoInformer, written
// through the status subresource); sessions that already have a phase are only cached.
//
// Which namespaces it acts on (only one operator may act on a namespace at a time):
//
//	--namespaces / WATCH_NAMESPACES                comma-separated globs ("oom-repro-ab12-*")
//	--namespace-selector / NAMESPACE_SELECTOR      a label selector on namespaces
//
// With neither it watches every namespace with one cluster-wide informer. With either, it
// watches the selected namespaces and runs one namespaced session informer per namespace that
// matches, started and stopped as namespaces come, go, or change their labels.
//
// It is built in GOPATH mode inside Debian's kubernetes source tree (cluster/build-go-operator.sh)
// against the client-go v1.20 that tree vendors; nothing here is downloaded.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

var (
	sessionsGVR   = schema.GroupVersionResource{Group: "vteam.ambient-code", Version: "v1alpha1", Resource: "agenticsessions"}
	namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

const ackReason = "AcknowledgedByGoInformer"

type options struct {
	kubeconfig        string
	namespaces        []string
	namespaceSelector string
	healthAddr        string
	pprofPort         int
	enablePprof       bool
	workers           int
	resync            time.Duration
	statsEvery        time.Duration
}

func envOr(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return fallback
}

func parseOptions() (options, error) {
	var o options
	var namespaces string
	pprofPort, err := strconv.Atoi(envOr("PPROF_PORT", "6060"))
	if err != nil {
		return o, fmt.Errorf("PPROF_PORT: %v", err)
	}
	klog.InitFlags(nil)
	flag.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; in-cluster config when empty")
	flag.StringVar(&namespaces, "namespaces", os.Getenv("WATCH_NAMESPACES"), "comma-separated namespace globs to act on (all when empty)")
	flag.StringVar(&o.namespaceSelector, "namespace-selector", os.Getenv("NAMESPACE_SELECTOR"), "label selector of the namespaces to act on")
	flag.StringVar(&o.healthAddr, "health-addr", envOr("HEALTH_ADDR", "127.0.0.1:8083"), "address of /healthz (JSON cache stats)")
	flag.IntVar(&o.pprofPort, "pprof-port", pprofPort, "port of net/http/pprof on 127.0.0.1 (served only with ENABLE_PPROF=true)")
	flag.IntVar(&o.workers, "workers", 4, "concurrent reconciles")
	flag.DurationVar(&o.resync, "resync", 0, "informer resync period (0: none)")
	flag.DurationVar(&o.statsEvery, "stats-every", 30*time.Second, "how often the cache size is logged")
	flag.Parse()
	o.enablePprof = os.Getenv("ENABLE_PPROF") == "true"
	for _, p := range strings.Split(namespaces, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := path.Match(p, ""); err != nil {
				return o, fmt.Errorf("bad namespace glob %q: %v", p, err)
			}
			o.namespaces = append(o.namespaces, p)
		}
	}
	if _, err := labels.Parse(o.namespaceSelector); err != nil {
		return o, fmt.Errorf("bad namespace selector %q: %v", o.namespaceSelector, err)
	}
	return o, nil
}

// scope is one session informer: cluster-wide (namespace "") or for one namespace.
type scope struct {
	informer cache.SharedIndexInformer
	stop     chan struct{}
}

type controller struct {
	opts         options
	client       dynamic.Interface
	queue        workqueue.RateLimitingInterface
	mu           sync.Mutex
	scopes       map[string]*scope
	acknowledged int64
}

func (c *controller) clusterWide() bool {
	return len(c.opts.namespaces) == 0 && c.opts.namespaceSelector == ""
}

func (c *controller) wantNamespace(name string) bool {
	if len(c.opts.namespaces) == 0 {
		return true
	}
	for _, p := range c.opts.namespaces {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func (c *controller) enqueue(obj interface{}) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

// startScope starts a session informer for `namespace` ("" = all) unless one runs.
func (c *controller) startScope(namespace string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.scopes[namespace]; ok {
		return
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(
		c.client, sessionsGVR, namespace, c.opts.resync, cache.Indexers{}, nil,
	).Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj interface{}) { c.enqueue(obj) },
	})
	s := &scope{informer: inf, stop: make(chan struct{})}
	c.scopes[namespace] = s
	go inf.Run(s.stop)
	klog.V(1).Infof("watching sessions in namespace %q", namespace)
}

func (c *controller) stopScope(namespace string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.scopes[namespace]; ok {
		close(s.stop)
		delete(c.scopes, namespace)
		klog.V(1).Infof("stopped watching namespace %q", namespace)
	}
}

func (c *controller) namespaceChanged(obj interface{}) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	if c.wantNamespace(u.GetName()) {
		c.startScope(u.GetName())
	} else {
		c.stopScope(u.GetName())
	}
}

func (c *controller) namespaceGone(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		c.stopScope(u.GetName())
	}
}

// watchNamespaces runs the namespace informer that starts and stops session informers.
func (c *controller) watchNamespaces(stop <-chan struct{}) cache.SharedIndexInformer {
	selector := c.opts.namespaceSelector
	inf := dynamicinformer.NewFilteredDynamicInformer(
		c.client, namespacesGVR, "", c.opts.resync, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = selector },
	).Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.namespaceChanged,
		UpdateFunc: func(_, obj interface{}) { c.namespaceChanged(obj) },
		// With a label selector, a namespace that loses the label arrives as a delete.
		DeleteFunc: c.namespaceGone,
	})
	go inf.Run(stop)
	return inf
}

func (c *controller) lookup(key string) (*unstructured.Unstructured, error) {
	namespace, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, err
	}
	if c.clusterWide() {
		namespace = ""
	}
	c.mu.Lock()
	s, ok := c.scopes[namespace]
	c.mu.Unlock()
	if !ok {
		return nil, nil
	}
	obj, exists, err := s.informer.GetStore().GetByKey(key)
	if err != nil || !exists {
		return nil, err
	}
	return obj.(*unstructured.Unstructured), nil
}

// reconcile acknowledges a session that has no phase yet; anything else is left as it is.
func (c *controller) reconcile(ctx context.Context, key string) error {
	u, err := c.lookup(key)
	if err != nil || u == nil {
		return err
	}
	if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != "" {
		return nil
	}
	now := time.Now().UTC().Format(time.RFC3339)
	out := u.DeepCopy()
	status := map[string]interface{}{
		"phase":              "Pending",
		"observedGeneration": u.GetGeneration(),
		"conditions": []interface{}{map[string]interface{}{
			"type":               "Reconciled",
			"status":             "True",
			"reason":             ackReason,
			"message":            "seen by the go-informer test operator",
			"lastTransitionTime": now,
			"observedGeneration": u.GetGeneration(),
		}},
	}
	if err := unstructured.SetNestedField(out.Object, status, "status"); err != nil {
		return err
	}
	_, err = c.client.Resource(sessionsGVR).Namespace(u.GetNamespace()).UpdateStatus(ctx, out, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		atomic.AddInt64(&c.acknowledged, 1)
		klog.V(1).Infof("acknowledged session %s", key)
	}
	return err
}

func (c *controller) worker(ctx context.Context) {
	for {
		item, shutdown := c.queue.Get()
		if shutdown {
			return
		}
		key := item.(string)
		if err := c.reconcile(ctx, key); err != nil {
			klog.V(1).Infof("reconcile %s: %v (retrying)", key, err)
			c.queue.AddRateLimited(key)
		} else {
			c.queue.Forget(key)
		}
		c.queue.Done(item)
	}
}

type stats struct {
	Sessions     int   `json:"sessions"`
	Namespaces   int   `json:"namespaces"`
	Synced       bool  `json:"synced"`
	Acknowledged int64 `json:"acknowledged"`
	ClusterWide  bool  `json:"clusterWide"`
}

func (c *controller) stats() stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := stats{Synced: true, ClusterWide: c.clusterWide(), Acknowledged: atomic.LoadInt64(&c.acknowledged)}
	for ns, s := range c.scopes {
		st.Sessions += len(s.informer.GetStore().ListKeys())
		st.Synced = st.Synced && s.informer.HasSynced()
		if ns != "" {
			st.Namespaces++
		}
	}
	return st
}

func serve(addr string, mux *http.ServeMux, what string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		klog.Fatalf("%s: listen %s: %v", what, addr, err)
	}
	klog.Infof("%s on http://%s", what, addr)
	go func() {
		if err := http.Serve(ln, mux); err != nil {
			klog.Errorf("%s: %v", what, err)
		}
	}()
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

func main() {
	opts, err := parseOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg, err := restConfig(opts.kubeconfig)
	if err != nil {
		klog.Fatalf("kube config: %v", err)
	}
	cfg.UserAgent = "go-informer-test-operator"
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	c := &controller{
		opts:   opts,
		client: client,
		queue:  workqueue.NewNamedRateLimitingQueue(workqueue.DefaultControllerRateLimiter(), "agenticsessions"),
		scopes: map[string]*scope{},
	}

	if opts.enablePprof {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		serve(net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.pprofPort)), mux, "pprof")
	}
	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.stats())
	})
	serve(opts.healthAddr, health, "health")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	if c.clusterWide() {
		c.startScope("")
		klog.Info("acting on AgenticSessions in all namespaces")
	} else {
		c.watchNamespaces(stop)
		klog.Infof("acting on AgenticSessions in namespaces matching %q, selector %q", opts.namespaces, opts.namespaceSelector)
	}
	for i := 0; i < opts.workers; i++ {
		go c.worker(ctx)
	}
	go func() {
		t := time.NewTicker(opts.statsEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				st := c.stats()
				klog.Infof("cache: %d sessions in %d namespaces (synced %v, acknowledged %d)", st.Sessions, st.Namespaces, st.Synced, st.Acknowledged)
			}
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	klog.Info("shutting down")
	close(stop)
	c.mu.Lock()
	for ns, s := range c.scopes {
		close(s.stop)
		delete(c.scopes, ns)
	}
	c.mu.Unlock()
	c.queue.ShutDown()
}
