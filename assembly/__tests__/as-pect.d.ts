// SPDX-License-Identifier: Apache-2.0
/// <reference types="@as-pect/assembly/types/as-pect" />
