// GEMM micro-benchmark used to pick the executor's linear-algebra library (OpenBLAS vs Eigen).
// Build and run: g++ -O3 -march=x86-64-v2 -fopenmp -I/usr/include/eigen3 scripts/bench_gemm.cpp -lopenblas -o /tmp/bench_gemm && /tmp/bench_gemm
#include <cblas.h>
#include <Eigen/Dense>
#include <chrono>
#include <vector>
#include <cstdio>
#include <random>
using namespace std::chrono;
int main(){
  int shapes[][3]={{128,768,768},{128,3072,768},{1,1000,512},{3136,64,576},{12544,16,27},{784,128,1152},{64,64,64}};
  for(auto&s:shapes){int M=s[0],N=s[1],K=s[2];
    std::vector<float>A(M*K),B(K*N),C(M*N);std::mt19937 r(1);for(auto&x:A)x=r()%100/50.f;for(auto&x:B)x=r()%100/50.f;
    auto t=[&](auto f){f();auto a=steady_clock::now();int n=0;do{f();n++;}while(duration<double>(steady_clock::now()-a).count()<0.3);return duration<double>(steady_clock::now()-a).count()/n*1e6;};
    double tb=t([&]{cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,M,N,K,1,A.data(),K,B.data(),N,0,C.data(),N);});
    Eigen::Map<Eigen::Matrix<float,-1,-1,Eigen::RowMajor>> a(A.data(),M,K),b(B.data(),K,N),c(C.data(),M,N);
    double te=t([&]{c.noalias()=a*b;});
    printf("%dx%dx%d openblas %.0fus eigen %.0fus gflops %.1f/%.1f\n",M,N,K,tb,te,2.0*M*N*K/tb/1e3,2.0*M*N*K/te/1e3);}
}
