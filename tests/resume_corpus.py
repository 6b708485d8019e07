"""Programs for the resume-equivalence properties: each stops at any reduction, goes
through the codec (and another process), and must finish as an uninterrupted run does."""

CORPUS = {
    "closures_share_env": """
(defn make-account [balance]
  (let [deposit (fn [x] (set! balance (+ balance x)) balance)
        withdraw (fn [x] (set! balance (- balance x)) balance)
        peek (fn [] balance)]
    {:deposit deposit :withdraw withdraw :peek peek}))
(def acct (make-account 100))
((:deposit acct) 50)
((:withdraw acct) 30)
(println "balance" ((:peek acct)))
((:peek acct))
""",
    "generator_callcc": """
(defn make-gen [items]
  (let [return nil
        resume nil
        gen (fn []
              (call/cc
                (fn [r]
                  (set! return r)
                  (if resume
                    (resume nil)
                    (do (doseq [x items]
                          (call/cc (fn [k] (set! resume k) (return x))))
                        (return :done))))))]
    gen))
(def g (make-gen [1 2 3 4]))
(def out [(g) (g) (g) (g) (g)])
(println out)
out
""",
    "reentry_multishot": """
(def k-saved nil)
(def count 0)
(def result (+ 100 (call/cc (fn [k] (set! k-saved k) 0))))
(set! count (inc count))
(when (< count 4) (k-saved count))
[count result]
""",
    "dynamic_wind_order": """
(def trace [])
(defn note [x] (set! trace (conj trace x)))
(def escape nil)
(call/cc (fn [k]
  (dynamic-wind
    (fn [] (note :before))
    (fn [] (note :during) (k :escaped) (note :never))
    (fn [] (note :after)))))
(try
  (dynamic-wind (fn [] (note :in2)) (fn [] (error "boom")) (fn [] (note :out2)))
  (catch e (note (:message e))))
(try (note :body) (finally (note :finally)))
trace
""",
    "exceptions": """
(defn risky [n] (if (odd? n) (throw {:type :odd :n n}) n))
(defn safe [n] (try (risky n) (catch :odd e (* 10 (:n e)))))
(def results (map safe (range 6)))
(def typed (try (/ 1 0) (catch :arithmetic-error e (:type e))))
(println results typed)
[results typed]
""",
    "deep_recursion": """
(defn count-down [n] (if (= n 0) 0 (+ 1 (count-down (- n 1)))))
(count-down 3000)
""",
    "tail_loop_and_data": """
(defn build [n acc] (if (= n 0) acc (build (dec n) (assoc acc n (* n n)))))
(def squares (build 200 {}))
(def total (reduce + (vals squares)))
(loop [i 0 s #{}] (if (< i 50) (recur (inc i) (conj s (mod i 7))) (println (count s))))
[total (get squares 12) (sort (keys (select-keys squares [1 2 3])))]
""",
    "strings_and_macros": """
(defmacro unless2 [c & body] `(if ~c nil (do ~@body)))
(defn shout [s] (str (upper-case s) "!"))
(def words (split "alpha beta gamma" " "))
(println (join ", " (map shout words)))
(unless2 false (println "macro ran"))
(-> words first shout (str "?"))
""",
    "atoms_delays_regex": """
(def a (atom 0))
(def shared [a a])
(defn bump [n] (dotimes [i n] (swap! a + i)) @a)
(bump 10)
(def d (delay (swap! a inc) (re-seq #"[0-9]+" (str "x" @a "y22"))))
(def r [(force d) (force d) @(first shared) (identical? (first shared) (second shared))])
(reset! (second shared) :done)
(def cache (atom {}))
(doseq [w (split "b a b c a b" #" ")] (swap! cache update w (fnil inc 0)))
(println r @a (format "%05.1f|%s" 2.25 @cache))
[r @(first shared) (realized? d) #"a\\d" (replace "a1b2" #"[0-9]" (fn [m] (str "<" m ">")))]
""",
}
