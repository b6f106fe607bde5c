/** The parts of a Kubernetes Pod the injector reads (admission-review.ts checks their types). */
export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: unknown;
}

export interface Container {
  readonly name: string;
  readonly ports?: readonly { readonly containerPort: number; readonly name?: string; readonly protocol?: string }[];
  readonly env?: readonly EnvVar[];
  readonly securityContext?: { readonly runAsUser?: number };
  readonly restartPolicy?: string;
  readonly volumeMounts?: readonly { readonly name: string }[];
}

/** A pod volume; of its kinds only a projected service-account token matters here. */
export interface Volume {
  readonly name: string;
  readonly projected?: { readonly sources?: readonly { readonly serviceAccountToken?: { readonly audience?: unknown } }[] };
}

export interface Pod {
  readonly metadata?: {
    readonly name?: string;
    readonly generateName?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly spec: {
    readonly containers: readonly Container[];
    readonly initContainers?: readonly Container[];
    readonly volumes?: readonly Volume[];
    readonly hostNetwork?: boolean;
    readonly securityContext?: { readonly runAsUser?: number };
  };
}
